"""Stage 2 + 3 for one shard: decode -> resize (policy) -> Lab -> HDF5, one image at a time.

Every input row ends with a status: ``ok`` or the reason it was excluded (corrupt, truncated,
grayscale, ...). A bad file never stops the shard; memory stays flat whatever the shard's size.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .colorspace import rgb_to_lab
from .imageio import ImageDecodeError, decode_rgb, read_header, check_size
from .shards import ShardWriter

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


def prepare_image(path, cfg: PreprocessConfig) -> np.ndarray:
    """One file -> (size x size x 3) float32 Lab, or ImageDecodeError with the reason."""
    header = read_header(path)
    check_size(path, header, max_pixels=cfg.max_pixels, min_side=cfg.min_side)
    needed = _needed_side(header.height, header.width, cfg.image_size, cfg.resize_policy)
    rgb = decode_rgb(path, header=header, max_pixels=cfg.max_pixels, needed_side=needed)
    lab = rgb_to_lab(resize_square(rgb, cfg.image_size, cfg.resize_policy))
    chroma = float(np.sqrt(lab[..., 1] ** 2 + lab[..., 2] ** 2).mean())
    if chroma < cfg.gray_chroma_threshold:
        raise ImageDecodeError(
            path, f"grayscale (mean chroma {chroma:.2f} < gray_chroma_threshold {cfg.gray_chroma_threshold})"
        )
    return lab


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
    with ShardWriter(out_h5, cfg.image_size, split, cfg.compression) as writer, \
            open(out_tsv, "w", newline="") as fh:
        status_out = csv.writer(fh, delimiter="\t", lineterminator="\n")
        status_out.writerow(["relpath", "sha256", "status"])
        for row, path in tqdm(zip(rows, paths), total=len(rows), desc=Path(out_h5).stem, unit="img",
                              disable=not progress, mininterval=1.0):
            try:
                lab = prepare_image(path, cfg)
            except ImageDecodeError as e:
                log.warning("excluded %s: %s", row["relpath"], e.reason)
                status_out.writerow([row["relpath"], row["sha256"], e.reason])
                counts["excluded"] += 1
                continue
            except Exception as e:  # an unexpected decoder failure names the file, never stops the shard
                log.exception("excluded %s: unexpected error", row["relpath"])
                status_out.writerow([row["relpath"], row["sha256"], f"decode failed ({type(e).__name__}: {e})"])
                counts["excluded"] += 1
                continue
            writer.append(lab, row["relpath"], row["sha256"])
            status_out.writerow([row["relpath"], row["sha256"], "ok"])
            counts["ok"] += 1
    log.info("%s: %d images written, %d excluded", out_h5, counts["ok"], counts["excluded"])
    return counts
