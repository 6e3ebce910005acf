"""Shared fixtures: synthetic colour photos and a folder with every kind of bad input."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# Fixtures shared across modules: a local HTTP server, and the SLURM cluster.
pytest_plugins = ["http_server", "slurm_cluster"]


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


def save(path: Path, rgb: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header claims width x height pixels (10 G here): must be refused unread."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

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
    (root / "random.png").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
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
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png"); out.append("rgba.png")
    Image.fromarray(colour_photo(96, 128, seed=201)).convert("P", palette=Image.ADAPTIVE).save(root / "palette.png")
    out.append("palette.png")
    Image.fromarray(colour_photo(96, 128, seed=202)).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    out.append("cmyk.jpg")
    rgb16 = colour_photo(96, 128, seed=203).astype(np.uint16) * 257
    import cv2

    cv2.imwrite(str(root / "deep16.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    out.append("deep16.png")
    frames = [Image.fromarray(colour_photo(64, 64, seed=204 + k)).convert("P") for k in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    out.append("anim.gif")
    pages = [Image.fromarray(colour_photo(64, 80, seed=210 + k)) for k in range(2)]
    pages[0].save(root / "pages.tif", save_all=True, append_images=pages[1:])
    out.append("pages.tif")
    return out


@pytest.fixture(scope="session")
def checkpoint_file(tmp_path_factory) -> Path:
    """A tiny untrained U-Net saved as training saves one (for the command line's --model)."""
    import torch

    from colorize.checkpoint import FORMAT_VERSION
    from colorize.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(arch="unet", base_channels=4, depth=2)
    path = tmp_path_factory.mktemp("model") / "best.pt"
    torch.save({"format_version": FORMAT_VERSION, "model_config": cfg.to_dict(),
                "model": build_model(cfg).state_dict(), "epoch": 0}, path)
    return path


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    """A folder of good colour photos plus every kind of bad input and a duplicate."""
    root = tmp_path / "photos"
    make_good_images(root)
    make_odd_but_good_images(root / "odd")
    make_bad_images(root / "bad")
    (root / "zz_copy_of_good_01.jpg").write_bytes((root / "good_01.jpg").read_bytes())
    return root


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slurm`` need a SLURM cluster: they run when one answers, or when
    COLORIZE_START_SLURM=1 lets the session fixture start the local one (.ci/run sets it).
    Otherwise they are deselected (not skipped), with a note saying how to run them."""
    import os

    slurm = [item for item in items if item.get_closest_marker("slurm")]
    if not slurm or os.environ.get("COLORIZE_START_SLURM") == "1":
        return
    from slurm_cluster import sinfo_node_states

    if sinfo_node_states() is not None:
        return
    config.hook.pytest_deselected(items=slurm)
    items[:] = [item for item in items if not item.get_closest_marker("slurm")]
    print(f"\n{len(slurm)} slurm test(s) deselected: no SLURM cluster answers; "
          "run them with COLORIZE_START_SLURM=1 (starts the local cluster, needs root).")
