"""Stage 2 + 3 for one shard: decode -> resize (policy) -> Lab -> HDF5, one image at a time.

Every input row ends with a status: ``ok`` or the reason it was excluded (corrupt, truncated,
grayscale, ...). A bad file never stops the shard; memory stays flat whatever the shard's size.

Per image the work is: one read of the file (header checked from those bytes), a reduced-size
JPEG decode when the photo is at least 2x larger than needed, one resize of the 8-bit image in
OpenCV's BGR order, one float32 Lab conversion (``colorspace.lab_planes``), written channel-first, as the
shard stores it. ``benchmarks/NOTES.md`` has the profile this layout comes from.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .colorspace import lab_planes, mean_chroma
from .imageio import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, ImageDecodeError, load_image
from .shards import ShardWriter
from .tsv import TsvStream

log = logging.getLogger("colorize.preprocess")

RESIZE_POLICIES = ("crop", "pad", "stretch")
SHARD_STATUS_COLUMNS = ("relpath", "sha256", "status")  # a shard's .tsv: one row per input row


@dataclass
class PreprocessConfig:
    """How a photo becomes a stored image of the shards and evaluation sets."""

    image_size: int = 256  # side of the square images stored in the shards (the seed: 256)
    resize_policy: str = "crop"  # crop: centre-crop to square then resize; pad: letterbox; stretch
    max_pixels: int = (
        DEFAULT_MAX_PIXELS  # decompression-bomb guard, checked on the header before decoding
    )
    min_side: int = (
        DEFAULT_MIN_SIDE  # images with a shorter side below this are excluded as too small
    )
    gray_chroma_threshold: float = (
        3.0  # mean Lab chroma below this: "grayscale", no colour to learn
    )
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
        out = cv2.copyMakeBorder(
            out,
            top,
            size - out_hw[0] - top,
            left,
            size - out_hw[1] - left,
            cv2.BORDER_CONSTANT,
            value=(128, 128, 128),
        )
    return out


def prepare_image(path, cfg: PreprocessConfig) -> np.ndarray:
    """One file -> (size x size x 3) float32 Lab, or ImageDecodeError with the reason.

    The array is a channel-last view of channel-first memory (``lab.transpose(2, 0, 1)`` is
    contiguous), so ``ShardWriter.append`` stores its L and ab planes without a copy.
    """
    img = load_image(
        path,
        max_pixels=cfg.max_pixels,
        min_side=cfg.min_side,
        bgr=True,
        needed_side=lambda h, w: _needed_side(h, w, cfg.image_size, cfg.resize_policy),
    )
    planes = lab_planes(resize_square(img, cfg.image_size, cfg.resize_policy), "BGR")
    chroma = mean_chroma(planes[1:])
    if chroma < cfg.gray_chroma_threshold:
        raise ImageDecodeError(
            path,
            f"grayscale (mean chroma {chroma:.2f} < gray_chroma_threshold {cfg.gray_chroma_threshold})",
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


def build_shard(
    rows: list[dict],
    paths: list,
    out_h5,
    out_tsv,
    split: str,
    cfg: PreprocessConfig,
    progress: bool = True,
) -> dict:
    """Write one shard from manifest rows (``relpath``, ``sha256``) and their files ``paths``.

    Writes ``out_tsv`` with one row per input row: relpath, sha256, status (ok or the reason).
    Returns counts {"ok": n, "excluded": m}.
    """
    from tqdm import tqdm

    if len(rows) != len(paths):
        raise ValueError(f"{out_h5}: {len(rows)} manifest rows but {len(paths)} files")
    counts = {"ok": 0, "excluded": 0}
    with (
        single_threaded_opencv(),
        ShardWriter(out_h5, cfg.image_size, split, cfg.compression) as writer,
        TsvStream(out_tsv, SHARD_STATUS_COLUMNS) as status,
    ):  # one line per image as it is done
        for row, path in tqdm(
            zip(rows, paths),
            total=len(rows),
            desc=Path(out_h5).stem,
            unit="img",
            disable=not progress,
            mininterval=1.0,
        ):
            try:
                lab = prepare_image(path, cfg)
            except ImageDecodeError as e:
                log.warning("excluded %s: %s", row["relpath"], e.reason)
                status.add((row["relpath"], row["sha256"], e.reason))
                counts["excluded"] += 1
                continue
            except (
                Exception
            ) as e:  # an unexpected decoder failure names the file, never stops the shard
                log.exception("excluded %s: unexpected error", row["relpath"])
                status.add(
                    (row["relpath"], row["sha256"], f"decode failed ({type(e).__name__}: {e})")
                )
                counts["excluded"] += 1
                continue
            writer.append(lab, row["relpath"], row["sha256"])
            status.add((row["relpath"], row["sha256"], "ok"))
            counts["ok"] += 1
    log.info("%s: %d images written, %d excluded", out_h5, counts["ok"], counts["excluded"])
    return counts
