"""Stage 2 + 3 for one shard: decode -> resize (policy) -> Lab -> HDF5, one image at a time.

Every input row ends with a status: ``ok`` or the reason it was excluded (corrupt, truncated,
grayscale, ...). A bad file never stops the shard; memory stays flat whatever the shard's size.

Per image the work is: one read of the file (header checked from those bytes), a reduced-size
JPEG decode when the photo is at least 2x larger than needed, one resize of the 8-bit image in
OpenCV's BGR order, one float32 Lab conversion (``lab_planes``), written channel-first, as the
shard stores it. ``benchmarks/NOTES.md`` has the profile this layout comes from.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .imageio import ImageDecodeError, load_image
from .shards import ShardWriter
from .tsv import row_line

log = logging.getLogger("colorize.preprocess")

RESIZE_POLICIES = ("crop", "pad", "stretch")


@dataclass
class PreprocessConfig:
    image_size: int = 256  # side of the square images stored in the shards (the seed: 256)
    resize_policy: str = "crop"  # crop: centre-crop to square then resize; pad: letterbox; stretch
    max_pixels: int = 100_000_000  # decompression-bomb guard, checked on the header before decoding
    min_side: int = 32  # images with a shorter side below this are excluded as too small
    gray_chroma_threshold: float = 3.0  # mean Lab chroma below this: "grayscale", no colour to learn
    compression: str = "none"  # none (fastest), lzf or gzip (benchmarks/shard_compression.py)


def _needed_side(h: int, w: int, size: int, policy: str) -> int:
    """Shorter decoded side that still gives >= size pixels along every output axis."""
    if policy == "pad":  # the longer side maps to `size`
        return max(1, int(np.ceil(size * min(h, w) / max(h, w))))
    return size


def resize_square(rgb: np.ndarray, size: int, policy: str = "crop") -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8. INTER_AREA when shrinking (no aliasing)."""
    h, w = rgb.shape[:2]
    if policy == "crop":
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        rgb = rgb[y : y + s, x : x + s]
        out_hw = (size, size)
    elif policy == "stretch":
        out_hw = (size, size)
    elif policy == "pad":
        scale = size / max(h, w)
        out_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    else:
        raise ValueError(f"unknown resize_policy {policy!r}; choose one of {RESIZE_POLICIES}")
    shrinking = out_hw[0] < rgb.shape[0]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(rgb), (out_hw[1], out_hw[0]), interpolation=interp)
    if policy == "pad" and out_hw != (size, size):
        # Letterbox with neutral gray: no chroma, so padding teaches no colour.
        top, left = (size - out_hw[0]) // 2, (size - out_hw[1]) // 2
        out = cv2.copyMakeBorder(out, top, size - out_hw[0] - top, left, size - out_hw[1] - left,
                                 cv2.BORDER_CONSTANT, value=(128, 128, 128))
    return out


def _lab(img: np.ndarray, order: str) -> np.ndarray:
    """HxWx3 uint8 (RGB or BGR) -> HxWx3 float32 Lab: the numbers of ``colorspace.rgb_to_lab``
    (float32 RGB in [0, 1], OpenCV) without a channel swap and with a one-pass scaling."""
    if img.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {img.dtype}")
    code = {"RGB": cv2.COLOR_RGB2Lab, "BGR": cv2.COLOR_BGR2Lab}[order]
    f32 = np.multiply(img, np.float32(1.0 / 255.0), dtype=np.float32)  # one pass (astype + *= is two)
    return cv2.cvtColor(f32, code, dst=f32)


def lab_planes(img: np.ndarray, order: str = "RGB") -> np.ndarray:
    """HxWx3 uint8 image (``order`` RGB or BGR) -> 3xHxW float32 Lab planes (L, a, b), laid
    out channel-first as the shards store L and ab."""
    return np.ascontiguousarray(_lab(img, order).transpose(2, 0, 1))


def lightness(img: np.ndarray, order: str = "RGB") -> np.ndarray:
    """HxWx3 uint8 image -> HxW float32 Lab L (0..100), contiguous: ``lab_planes(img)[0]``
    without laying out a and b (inference needs only L at full resolution)."""
    return cv2.extractChannel(_lab(img, order), 0)


def mean_chroma_planes(planes: np.ndarray) -> float:
    """Mean Lab chroma sqrt(a^2 + b^2) of 3xHxW Lab planes."""
    return float(cv2.mean(cv2.magnitude(planes[1], planes[2]))[0])


def prepare_image(path, cfg: PreprocessConfig) -> np.ndarray:
    """One file -> (size x size x 3) float32 Lab, or ImageDecodeError with the reason.

    The array is a channel-last view of channel-first memory (``lab.transpose(2, 0, 1)`` is
    contiguous), so ``ShardWriter.append`` stores its L and ab planes without a copy.
    """
    img = load_image(path, max_pixels=cfg.max_pixels, min_side=cfg.min_side, bgr=True,
                     needed_side=lambda h, w: _needed_side(h, w, cfg.image_size, cfg.resize_policy))
    planes = lab_planes(resize_square(img, cfg.image_size, cfg.resize_policy), "BGR")
    chroma = mean_chroma_planes(planes)
    if chroma < cfg.gray_chroma_threshold:
        raise ImageDecodeError(
            path, f"grayscale (mean chroma {chroma:.2f} < gray_chroma_threshold {cfg.gray_chroma_threshold})"
        )
    return planes.transpose(1, 2, 0)


@contextlib.contextmanager
def single_threaded_opencv():
    """OpenCV's own thread pool off for the duration: a shard job is one core's work (the
    workflow runs one job per core), and at 256x256 the pool costs more than it gives."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def build_shard(rows: list[dict], paths: list, out_h5, out_tsv, split: str, cfg: PreprocessConfig,
                progress: bool = True) -> dict:
    """Write one shard from manifest rows (``relpath``, ``sha256``) and their files ``paths``.

    Writes ``out_tsv`` with one row per input row: relpath, sha256, status (ok or the reason).
    Returns counts {"ok": n, "excluded": m}.
    """
    from tqdm import tqdm

    if len(rows) != len(paths):
        raise ValueError(f"{out_h5}: {len(rows)} manifest rows but {len(paths)} files")
    counts = {"ok": 0, "excluded": 0}
    out_tsv = Path(out_tsv)
    out_tsv.parent.mkdir(parents=True, exist_ok=True)
    with single_threaded_opencv(), ShardWriter(out_h5, cfg.image_size, split, cfg.compression) as writer, \
            open(out_tsv, "w", encoding="utf-8") as fh:
        fh.write("relpath\tsha256\tstatus\n")  # streamed: one line per image as it is done
        for row, path in tqdm(zip(rows, paths), total=len(rows), desc=Path(out_h5).stem, unit="img",
                              disable=not progress, mininterval=1.0):
            try:
                lab = prepare_image(path, cfg)
            except ImageDecodeError as e:
                log.warning("excluded %s: %s", row["relpath"], e.reason)
                fh.write(row_line((row["relpath"], row["sha256"], e.reason)) + "\n")
                counts["excluded"] += 1
                continue
            except Exception as e:  # an unexpected decoder failure names the file, never stops the shard
                log.exception("excluded %s: unexpected error", row["relpath"])
                fh.write(row_line((row["relpath"], row["sha256"], f"decode failed ({type(e).__name__}: {e})")) + "\n")
                counts["excluded"] += 1
                continue
            writer.append(lab, row["relpath"], row["sha256"])
            fh.write(row_line((row["relpath"], row["sha256"], "ok")) + "\n")
            counts["ok"] += 1
    log.info("%s: %d images written, %d excluded", out_h5, counts["ok"], counts["excluded"])
    return counts
