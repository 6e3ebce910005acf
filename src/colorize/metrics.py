"""Per-image quality of a colorization, against the truth and against the gray baseline.

All metrics are computed on what a viewer sees: the 8-bit RGB of (true L, predicted ab) versus
the 8-bit RGB of (true L, true ab), at the test shard's size.

==================  ==========================================================================
``psnr``            dB, data range 255, over all three channels; capped at ``PSNR_CAP`` (exact)
``ssim``            scikit-image SSIM, ``channel_axis=-1``, ``data_range=255``
``colorfulness_*``  Hasler & Suesstrunk (2003): rg = R-G, yb = (R+G)/2 - B,
                    sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)
``chroma_*``        mean Lab chroma sqrt(a^2 + b^2) of the 8-bit RGB
``auc``             Zhang et al. (2016): area under the curve "fraction of pixels whose ab
                    distance to the truth is <= t", t from 0 to 150, normalised to 0..1
``vivid_hits``      issue 20: of the pixels whose true Lab chroma is >= ``VIVID_CHROMA`` (20),
                    the share whose predicted ab lies less than ``VIVID_RADIUS`` (20) from the
                    true ab (strictly: so gray, at distance = chroma >= 20, scores exactly 0),
                    a perfect colorizer 1. NaN for an image with no vivid
                    pixel (nothing to hit); ``vivid_pixels`` is that pixel count
==================  ==========================================================================

Summaries (``summarize``) give vivid hits two ways: ``vivid_hits_image_mean``, the mean over the
images that have a vivid pixel (images without one are left out, as their NaN says), and
``vivid_hits_pooled``, hits over vivid pixels of the whole set (a photo with more vivid pixels
weighs more). Every other summary column is a plain mean over images.

Pure functions of arrays and rows (numpy only; scikit-image is imported by ``ssim`` when first
called): training imports ``psnr`` without the inference stack. ``colorize.evaluate`` runs
models over shards and folders and writes the tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .colorspace import mean_chroma, rgb_to_lab

PSNR_CAP = 100.0  # dB for an exact match: infinity would swamp a mean
AUC_MAX_THRESHOLD = 150.0  # Zhang et al.: thresholds 0..150 in ab units
VIVID_CHROMA = 20.0  # Lab chroma from which a true pixel counts as vivid
VIVID_RADIUS = 20.0  # ab distance within which a vivid pixel counts as hit
GRAY = "gray"  # method name of the baseline: the true L with ab = 0
METRIC_COLUMNS = (
    "psnr",
    "ssim",
    "colorfulness_pred",
    "colorfulness_true",
    "chroma_pred",
    "chroma_true",
    "auc",
)
VIVID_COLUMNS = ("vivid_hits", "vivid_pixels")  # per image (NaN / 0 without a vivid pixel)
VIVID_SUMMARY_COLUMNS = ("vivid_hits_image_mean", "vivid_hits_pooled")
PER_IMAGE_COLUMNS = ("image", "method", *METRIC_COLUMNS, *VIVID_COLUMNS)
SUMMARY_COLUMNS = ("method", "n_images", *METRIC_COLUMNS, "psnr_minus_gray", *VIVID_SUMMARY_COLUMNS)
BY_SOURCE_COLUMNS = ("source", *SUMMARY_COLUMNS)


# --- single metrics --------------------------------------------------------------------------


def psnr(pred: np.ndarray, true: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (data range 255), capped at ``PSNR_CAP``."""
    mse = float(np.mean((pred.astype(np.float64) - true.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse))


def ssim(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean SSIM of two HxWx3 uint8 images (7x7 window; 3x3 or 5x5 below 7 pixels a side, NaN below 3)."""
    side = min(pred.shape[:2])
    if side < 3:
        return math.nan
    from skimage.metrics import structural_similarity

    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(pred, true, channel_axis=-1, data_range=255, win_size=win))


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colorfulness of an RGB image (0 for any gray image)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def ab_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """HxWx2 Lab ab of an 8-bit RGB image; exactly 0 where R == G == B.

    OpenCV's float Lab puts up to ~0.13 of chroma on some exact grays; a neutral pixel has
    none by definition, so it is set to 0 rather than let rounding colour the gray baseline.
    """
    ab = rgb_to_lab(rgb)[..., 1:]
    neutral = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    ab[neutral] = 0.0
    return ab


def ab_error_auc(
    ab_pred: np.ndarray, ab_true: np.ndarray, max_threshold: float = AUC_MAX_THRESHOLD
) -> float:
    """Area under "fraction of pixels with ab distance <= t" for t in [0, max_threshold], over max_threshold.

    Computed exactly: the area under an empirical CDF up to T is mean(max(0, T - d)), so the
    result is mean(clip(1 - d / T, 0, 1)), i.e. the limit of sampling t ever more finely (the
    paper samples integer t; the two differ by at most 1/(2T), 0.003 at T = 150).
    ``ab_*`` are HxWx2 (or any ...x2) in Lab units.
    """
    d = np.sqrt(((ab_pred.astype(np.float64) - ab_true.astype(np.float64)) ** 2).sum(axis=-1))
    return float(np.clip(1.0 - d / max_threshold, 0.0, 1.0).mean())


def vivid_hit_counts(
    ab_pred: np.ndarray,
    ab_true: np.ndarray,
    chroma: float = VIVID_CHROMA,
    radius: float = VIVID_RADIUS,
) -> tuple[int, int]:
    """(hits, vivid pixels): pixels with true chroma >= ``chroma``, and those of them whose
    predicted ab lies less than ``radius`` from the true ab (``ab_*`` ...x2, Lab units). The
    bound is strict so that gray (distance = true chroma >= 20) never hits."""
    ab_true = ab_true.astype(np.float64)
    vivid = np.hypot(ab_true[..., 0], ab_true[..., 1]) >= chroma
    d = np.hypot(*np.moveaxis(ab_pred.astype(np.float64)[vivid] - ab_true[vivid], -1, 0))
    return int((d < radius).sum()), int(vivid.sum())


def vivid_hits(ab_pred: np.ndarray, ab_true: np.ndarray, **kwargs) -> float:
    """Share of the vivid true pixels that the prediction hits (``vivid_hit_counts``); NaN without any."""
    hits, vivid = vivid_hit_counts(ab_pred, ab_true, **kwargs)
    return hits / vivid if vivid else math.nan


def pooled_vivid_hits(rows: Sequence[dict]) -> float:
    """Hits over vivid pixels of all ``rows`` (each with ``vivid_hits`` and ``vivid_pixels``); NaN without any."""
    vivid = sum(int(r["vivid_pixels"]) for r in rows)
    hits = sum(
        float(r["vivid_hits"]) * int(r["vivid_pixels"]) for r in rows if int(r["vivid_pixels"])
    )
    return hits / vivid if vivid else math.nan


def image_mean_vivid_hits(rows: Sequence[dict]) -> float:
    """Mean ``vivid_hits`` over the rows that have a vivid pixel; NaN when none has."""
    values = [float(r["vivid_hits"]) for r in rows if int(r["vivid_pixels"])]
    return float(np.mean(values)) if values else math.nan


def image_metrics(pred_rgb: np.ndarray, true_rgb: np.ndarray) -> dict[str, float]:
    """Every metric of ``METRIC_COLUMNS`` for one prediction (HxWx3 uint8) against its truth."""
    ab_pred, ab_true = ab_of_rgb(pred_rgb), ab_of_rgb(true_rgb)
    hits, vivid = vivid_hit_counts(ab_pred, ab_true)
    return {
        "psnr": psnr(pred_rgb, true_rgb),
        "ssim": ssim(pred_rgb, true_rgb),
        "colorfulness_pred": colorfulness(pred_rgb),
        "colorfulness_true": colorfulness(true_rgb),
        "chroma_pred": mean_chroma(ab_pred),
        "chroma_true": mean_chroma(ab_true),
        "auc": ab_error_auc(ab_pred, ab_true),
        "vivid_hits": hits / vivid if vivid else math.nan,
        "vivid_pixels": vivid,
    }


# --- tables ----------------------------------------------------------------------------------


def summarize(rows: Sequence[dict], baseline: str = GRAY) -> list[dict]:
    """Mean of every metric per method (in order of first appearance), PSNR minus the baseline's,
    and vivid hits as a mean over images with vivid pixels and pooled over pixels."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        row = {"method": m, "n_images": len(mine)}
        row.update({c: float(np.mean([r[c] for r in mine])) for c in METRIC_COLUMNS})
        row["vivid_hits_image_mean"] = image_mean_vivid_hits(mine)
        row["vivid_hits_pooled"] = pooled_vivid_hits(mine)
        out.append(row)
    base = next((r for r in out if r["method"] == baseline), None)
    for row in out:
        row["psnr_minus_gray"] = row["psnr"] - base["psnr"] if base else math.nan
    return out


def summarize_by_source(rows: Sequence[dict], source_of, baseline: str = GRAY) -> list[dict]:
    """``summarize`` per source (``source_of(image name)``, sources in order of first appearance):
    one row per (source, method), ``BY_SOURCE_COLUMNS``, so a weak source shows."""
    sources = list(dict.fromkeys(source_of(r["image"]) for r in rows))
    out = []
    for src in sources:
        out += [
            {"source": src, **row}
            for row in summarize([r for r in rows if source_of(r["image"]) == src], baseline)
        ]
    return out


def weakest_source(by_source: Sequence[dict], method: str) -> dict | None:
    """The row of ``method`` with the smallest PSNR gain over gray (None without one)."""
    mine = [r for r in by_source if r["method"] == method]
    return min(mine, key=lambda r: float(r["psnr_minus_gray"])) if mine else None
