"""Plain helpers the tests share: synthetic photos and image files, tiny models and checkpoints, small shards.

Fixtures built on them (a checkpoint file, shards, a folder of bad inputs) are in conftest.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from colorize.checkpoint import FORMAT_VERSION
from colorize.colorspace import rgb_to_lab
from colorize.imageio import as_rgb_uint8
from colorize.metrics import AUC_MAX_THRESHOLD
from colorize.models import ModelConfig, build_model
from colorize.quantize import soft_encode
from colorize.shards import ShardWriter

MiB = 1024**2
TINY_UNET = ModelConfig(
    arch="unet", base_channels=4, depth=2
)  # the tiny U-Net every CPU test trains or runs


# --- synthetic photos (arrays) ---------------------------------------------------------------


def colour_photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth, clearly coloured HxWx3 uint8 image (gradients + a blob), unique per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.2, 0.8, 2) * (h, w)
    blob = np.exp(-(((y - cy) / (0.2 * h)) ** 2 + ((x - cx) / (0.2 * w)) ** 2))
    r = 60 + 150 * x / w + 40 * blob
    g = 40 + 120 * y / h
    b = 200 - 140 * blob + 20 * rng.standard_normal((h, w))
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def smooth_image(
    h: int, w: int, seed: int = 0, cells: int = 6, lo: int = 40, hi: int = 215
) -> np.ndarray:
    """A smooth colour HxWx3 uint8 image: a cells x cells grid of random colours in [lo, hi), upsampled
    (cubic). The defaults stay mid-tone (no pure black or white, where any colour leaves the gamut)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(lo, hi, (cells, cells, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def gradient_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """HxWx3 uint8: colour gradients, vertical stripes and noise (every decoder and resizer has work)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([60 + 150 * x / w, 40 + 120 * y / h, 200 - 100 * np.sin(x / 9)], -1)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def upright_photo(h: int = 40, w: int = 64, seed: int = 0) -> np.ndarray:
    """Colour with lightness that tells every orientation apart: a ramp left -> right, a
    bright block top-left and a dark one bottom-centre."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 60 + 120 * x / w
    base[: h // 3, : w // 4] = 245
    base[2 * h // 3 :, w // 3 : w // 2] = 15
    rgb = np.stack([base, 0.6 * base + 40 * y / h, 255 - base], -1) + rng.normal(0, 2, (h, w, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def smooth_rgb(size: int, seed: int) -> np.ndarray:
    """A smooth, colourful float32 RGB image in [0, 1], unique per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    freq, phase = rng.uniform(0.5, 1.5, 3), rng.uniform(0, 2 * np.pi, 3)
    chans = [
        0.5 + 0.35 * np.sin(2 * np.pi * freq[c] * (x * (c + 1) + y) + phase[c]) for c in range(3)
    ]
    return np.stack(chans, -1).astype(np.float32)


def assert_same_lightness(inp: np.ndarray, out: np.ndarray) -> None:
    """The output keeps the input's Lab lightness: |dL| <= 1 for at least 99 % of pixels."""

    def lightness(rgb: np.ndarray) -> np.ndarray:
        return rgb_to_lab(as_rgb_uint8(rgb))[..., 0]

    dl = np.abs(lightness(inp) - lightness(out))
    assert (dl <= 1.0).mean() >= 0.99, (
        f"|dL| <= 1 for only {(dl <= 1).mean():.3%} of pixels (max {dl.max():.2f})"
    )


# --- image files and folders -----------------------------------------------------------------

# File names no script expects (spaces, tabs, newlines, backslashes, non-ASCII, quotes).
ODD_NAMES = [
    "two  spaces.jpg",
    " leading.jpg",
    "trailing .jpg",
    "tab\there.jpg",
    "new\nline.jpg",
    "back\\slash.png",
    "ünïcødé 写真.png",
    "quote'\"s #1 %20.png",
    "\\t literal.png",
]


def save(path: Path, rgb: np.ndarray, **kw) -> Path:
    """Write an image array to ``path`` (format from the suffix), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


def mkdirs(path: Path) -> Path:
    """Make a folder and its parents; return it."""
    path.mkdir(parents=True)
    return path


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header claims width x height pixels (10 G here): must be refused unread."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def make_good_images(root: Path, n: int = 6, size=(96, 128)) -> list[str]:
    """n distinct colour JPEGs/PNGs (names good_XX), in a subfolder for half of them."""
    names = []
    for i in range(n):
        ext = ".jpg" if i % 2 else ".png"
        rel = f"{'sub/' if i % 3 == 0 else ''}good_{i:02d}{ext}"
        save(root / rel, colour_photo(*size, seed=i), **({"quality": 95} if ext == ".jpg" else {}))
        names.append(rel)
    return names


def make_bad_images(root: Path) -> dict[str, str]:
    """One file per kind of problem -> the reason category the manifest must record."""
    root.mkdir(parents=True, exist_ok=True)
    photo = colour_photo(96, 128, seed=100)
    expected = {}
    good_jpg = save(root / "truncated.jpg", photo, quality=95).read_bytes()
    (root / "truncated.jpg").write_bytes(good_jpg[: len(good_jpg) // 2])
    expected["truncated.jpg"] = "truncated JPEG"
    (root / "empty.png").write_bytes(b"")
    expected["empty.png"] = "empty file"
    (root / "notes.jpg").write_text("this is a text file with an image extension\n")
    expected["notes.jpg"] = "not an image"
    (root / "random.png").write_bytes(
        np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    )
    expected["random.png"] = "not an image"
    gray = np.repeat(colour_photo(96, 128, seed=101)[..., :1], 3, axis=-1)
    save(root / "gray_rgb.png", gray)  # R = G = B stored as RGB
    expected["gray_rgb.png"] = "grayscale"
    save(root / "gray_l.png", gray[..., 0])  # a true single-channel image
    expected["gray_l.png"] = "grayscale"
    save(root / "tiny.png", colour_photo(8, 8, seed=102))
    expected["tiny.png"] = "too small"
    png_bomb(root / "bomb.png")
    expected["bomb.png"] = "too many pixels"
    (root / "readme.txt").write_text("not an image at all\n")
    expected["readme.txt"] = "not an image file"
    return expected


def make_odd_but_good_images(root: Path) -> list[str]:
    """Unusual encodings that hold real colour and must reach the shards."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    rgb = colour_photo(96, 128, seed=200)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    out.append("rgba.png")
    Image.fromarray(colour_photo(96, 128, seed=201)).convert("P", palette=Image.ADAPTIVE).save(
        root / "palette.png"
    )
    out.append("palette.png")
    Image.fromarray(colour_photo(96, 128, seed=202)).convert("CMYK").save(
        root / "cmyk.jpg", quality=95
    )
    out.append("cmyk.jpg")
    rgb16 = colour_photo(96, 128, seed=203).astype(np.uint16) * 257
    cv2.imwrite(str(root / "deep16.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    out.append("deep16.png")
    frames = [Image.fromarray(colour_photo(64, 64, seed=204 + k)).convert("P") for k in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    out.append("anim.gif")
    pages = [Image.fromarray(colour_photo(64, 80, seed=210 + k)) for k in range(2)]
    pages[0].save(root / "pages.tif", save_all=True, append_images=pages[1:])
    out.append("pages.tif")
    return out


def zeros_zip(path: Path, size: int, name: str = "zeros.bin") -> Path:
    """A real deflate bomb: ``size`` zero bytes, written in chunks (never held whole)."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open(name, "w", force_zip64=True) as fh,
    ):
        chunk = bytes(MiB)
        for _ in range(size // MiB):
            fh.write(chunk)
    return path


# --- tiny models and checkpoints -------------------------------------------------------------


def tiny_model() -> nn.Module:
    """The tiny U-Net, untrained (seed 0), in eval mode."""
    torch.manual_seed(0)
    return build_model(TINY_UNET).eval()


def tinted_model() -> nn.Module:
    """A tiny random U-Net whose output bias gives a moderate colour (chroma ~20), as a trained model would."""
    torch.manual_seed(0)
    model = build_model(TINY_UNET)
    with torch.no_grad():
        model.out.weight.mul_(2.0)
        model.out.bias.copy_(torch.tensor([0.12, 0.10]))
    return model.eval()


def save_checkpoint(model: nn.Module, cfg: ModelConfig, path: Path) -> Path:
    """The least a checkpoint holds for ``checkpoint.load_model`` (as training saves ``best.pt``)."""
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "model_config": cfg.to_dict(),
            "model": model.state_dict(),
            "epoch": 0,
        },
        path,
    )
    return path


# --- Snakemake scripts, run in-process ------------------------------------------------------


class Bag(dict):
    """Stands in for Snakemake's named lists: attribute and key access, ``.get``."""

    __getattr__ = dict.__getitem__


@contextlib.contextmanager
def kept_logging():
    """Undo what a Snakemake script run in-process (``runpy``) sets up: the root logger's
    handlers (its log file) and level, and ``sys.excepthook``."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        yield
    finally:
        sys.excepthook = sys.__excepthook__
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


def in_private_mount(script: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``sh -c script`` in a private mount namespace (``unshare``), where a test can mount a
    real read-only or tiny (fills up) tmpfs; the mounts vanish with the process."""
    env = dict(os.environ, COLORIZE_DEVICE="cpu", OMP_NUM_THREADS="1")
    return subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c", script, "sh", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


# --- shards ----------------------------------------------------------------------------------


def write_shard(path: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """A shard of ``n`` smooth colourful images (``smooth_rgb``); its split is the name's prefix (train-000.h5)."""
    with ShardWriter(path, size, split=path.stem.split("-")[0]) as w:
        for i in range(n):
            w.append(
                rgb_to_lab(smooth_rgb(size, seed * 1000 + i)), f"{path.stem}/{i}.png", f"{seed}-{i}"
            )
    return path


# --- reference code (only the tests use it) --------------------------------------------------


def soft_encode_dense(ab: torch.Tensor, centres: torch.Tensor, **kw) -> torch.Tensor:
    """The soft targets of ``quantize.soft_encode`` as a dense BxQxHxW distribution."""
    idx, weights = soft_encode(ab, centres, **kw)
    dense = torch.zeros(
        ab.shape[0], len(centres), *ab.shape[-2:], dtype=weights.dtype, device=weights.device
    )
    return dense.scatter_(1, idx, weights)


def ab_error_curve(
    ab_pred: np.ndarray, ab_true: np.ndarray, thresholds=None
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, fraction of pixels whose ab distance is <= each threshold), for plotting."""
    t = (
        np.arange(0, AUC_MAX_THRESHOLD + 1)
        if thresholds is None
        else np.asarray(thresholds, dtype=np.float64)
    )
    d = np.sort(
        np.sqrt(
            ((ab_pred.astype(np.float64) - ab_true.astype(np.float64)) ** 2).sum(axis=-1)
        ).ravel()
    )
    return t, np.searchsorted(d, t, side="right") / max(d.size, 1)


def lab_to_rgb_reference(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """``colorspace.lab_to_rgb(keep_lightness=True)`` as it was before the speed work (issue 13):
    the lightness checked by a second full-image conversion, every moved pixel shrunk."""
    from colorize.colorspace import _shrink_chroma

    L = np.asarray(L, dtype=np.float32)
    lab = np.concatenate([L[..., None], np.asarray(ab, dtype=np.float32)], axis=-1)
    rgb = cv2.cvtColor(np.ascontiguousarray(lab), cv2.COLOR_Lab2RGB)
    moved = np.abs(cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[..., 0] - L) > 0.2
    if moved.any():
        idx = np.flatnonzero(moved)
        flat = lab.reshape(-1, 3)[idx]
        flat[:, 1:] = _shrink_chroma(flat)
        rgb.reshape(-1, 3)[idx] = cv2.cvtColor(flat[:, None, :], cv2.COLOR_Lab2RGB)[:, 0]
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def lab_to_rgb_exact(L: np.ndarray, ab: np.ndarray, steps: int = 20) -> np.ndarray:
    """The gamut-safe conversion done the slow, exact way: every pixel outside the sRGB gamut
    (linear RGB beyond 1e-3 of [0, 1]) shrunk toward gray by a ``steps``-halving bisection of
    its own chroma scale into the gamut proper (to within 2**-steps), then converted: what
    ``colorspace.lab_to_rgb(keep_lightness=True)`` approximates with its gamut table."""
    from colorize.colorspace import _in_gamut, _shrink_chroma

    L = np.asarray(L, dtype=np.float32)
    lab = np.ascontiguousarray(
        np.concatenate([L[..., None], np.asarray(ab, dtype=np.float32)], axis=-1)
    )
    flat = lab.reshape(-1, 3)
    idx = np.flatnonzero(~_in_gamut(flat, 1e-3))
    flat[idx, 1:] = _shrink_chroma(flat[idx], steps=steps, tol=0.0)
    return cv2.convertScaleAbs(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), alpha=255.0)


def matrix_profile(red, green, blue, gamma: float, name: str) -> bytes:
    """A real ICC v2 RGB display profile (matrix/TRC), byte by byte: the three D50-adapted
    colorants, one gamma curve for each channel, the D50 white point and a description."""

    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z):
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    text = name.encode("ascii") + b"\0"
    desc = (
        b"desc"
        + b"\0" * 4
        + struct.pack(">I", len(text))
        + text
        + b"\0" * 8
        + b"\0\0\0"
        + b"\0" * 67
    )
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*red)),
        (b"gXYZ", xyz(*green)),
        (b"bXYZ", xyz(*blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


ADOBE_RGB = dict(
    red=(0.6097, 0.3111, 0.0195),
    green=(0.2053, 0.6257, 0.0609),
    blue=(0.1492, 0.0632, 0.7446),
    gamma=563 / 256,
    name="Adobe RGB (1998) test profile",
)
