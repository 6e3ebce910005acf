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
==================  ==========================================================================

``evaluate_shards`` runs a model and the gray baseline (ab = 0) over the test shards and
writes the per-image TSV and the summary TSV a Snakemake rule declares. ``evaluate_folder``
does the same for any folder of photos (e.g. another data set, out of the training domain),
decoding each file exactly as the shards were made (``preprocess.prepare_image``).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from skimage.metrics import structural_similarity
from tqdm import tqdm

from .colorspace import lab_to_rgb, mean_chroma, rgb_to_lab
from .imageio import ImageDecodeError, is_image_name
from .infer import default_batch_size, load_model, model_device, predict_l_batch, working_size
from .manifest import walk
from .preprocess import PreprocessConfig, prepare_image
from .shards import iter_batches
from .tsv import write_tsv

log = logging.getLogger("colorize.metrics")

PSNR_CAP = 100.0  # dB for an exact match: infinity would swamp a mean
AUC_MAX_THRESHOLD = 150.0  # Zhang et al.: thresholds 0..150 in ab units
GRAY = "gray"  # method name of the baseline: the true L with ab = 0
METRIC_COLUMNS = ("psnr", "ssim", "colorfulness_pred", "colorfulness_true", "chroma_pred", "chroma_true", "auc")
PER_IMAGE_COLUMNS = ("image", "method", *METRIC_COLUMNS)
SUMMARY_COLUMNS = ("method", "n_images", *METRIC_COLUMNS, "psnr_minus_gray")
EXCLUDED_COLUMNS = ("image", "reason")


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


def ab_error_auc(ab_pred: np.ndarray, ab_true: np.ndarray, max_threshold: float = AUC_MAX_THRESHOLD) -> float:
    """Area under "fraction of pixels with ab distance <= t" for t in [0, max_threshold], over max_threshold.

    Computed exactly: the area under an empirical CDF up to T is mean(max(0, T - d)), so the
    result is mean(clip(1 - d / T, 0, 1)), i.e. the limit of sampling t ever more finely (the
    paper samples integer t; the two differ by at most 1/(2T), 0.003 at T = 150).
    ``ab_*`` are HxWx2 (or any ...x2) in Lab units.
    """
    d = np.sqrt(((ab_pred.astype(np.float64) - ab_true.astype(np.float64)) ** 2).sum(axis=-1))
    return float(np.clip(1.0 - d / max_threshold, 0.0, 1.0).mean())


def ab_error_curve(ab_pred: np.ndarray, ab_true: np.ndarray, thresholds=None) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, fraction of pixels whose ab distance is <= each threshold), for plotting."""
    t = np.arange(0, AUC_MAX_THRESHOLD + 1) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    d = np.sort(np.sqrt(((ab_pred.astype(np.float64) - ab_true.astype(np.float64)) ** 2).sum(axis=-1)).ravel())
    return t, np.searchsorted(d, t, side="right") / max(d.size, 1)


def image_metrics(pred_rgb: np.ndarray, true_rgb: np.ndarray) -> dict[str, float]:
    """Every metric of ``METRIC_COLUMNS`` for one prediction (HxWx3 uint8) against its truth."""
    ab_pred, ab_true = ab_of_rgb(pred_rgb), ab_of_rgb(true_rgb)
    return {
        "psnr": psnr(pred_rgb, true_rgb),
        "ssim": ssim(pred_rgb, true_rgb),
        "colorfulness_pred": colorfulness(pred_rgb),
        "colorfulness_true": colorfulness(true_rgb),
        "chroma_pred": mean_chroma(ab_pred),
        "chroma_true": mean_chroma(ab_true),
        "auc": ab_error_auc(ab_pred, ab_true),
    }


# --- TSV -------------------------------------------------------------------------------------


# --- evaluation over the test split ------------------------------------------------------------


def summarize(rows: Sequence[dict], baseline: str = GRAY) -> list[dict]:
    """Mean of every metric per method (in order of first appearance), plus PSNR minus the baseline's."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        row = {"method": m, "n_images": len(mine)}
        row.update({c: float(np.mean([r[c] for r in mine])) for c in METRIC_COLUMNS})
        out.append(row)
    base = next((r for r in out if r["method"] == baseline), None)
    for row in out:
        row["psnr_minus_gray"] = row["psnr"] - base["psnr"] if base else math.nan
    return out


def evaluate_shards(
    model: torch.nn.Module,
    test_shards: Sequence[str | Path],
    per_image_path=None,
    summary_path=None,
    *,
    method: str = "model",
    size: int | None = None,
    batch_size: int | None = None,
    workers: int = 2,
    progress: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Score ``model`` and the gray baseline on every test image; returns (per-image rows, summary rows).

    ``method`` names the model's rows (the baseline's are ``"gray"``). ``size`` None predicts at
    the shard's size; another value goes through that working size as full-resolution
    inference does. When given, ``per_image_path`` gets ``PER_IMAGE_COLUMNS`` and
    ``summary_path`` gets ``SUMMARY_COLUMNS`` (one row per method).
    """
    _check_method(method)
    model.eval()
    batch_size = batch_size or default_batch_size(model_device(model))
    rows: list[dict] = []
    bar = tqdm(desc="evaluate", unit="img", disable=not progress)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="metrics") as pool:
        for shard in test_shards:
            for L, ab_true, rel in iter_batches(shard, batch_size):
                ab_pred = predict_l_batch(model, L, size)
                for pair in pool.map(lambda args: _score(method, *args), zip(rel, L, ab_true, ab_pred)):
                    rows.extend(pair)
                bar.update(len(rel))
    bar.close()
    return rows, _finish(rows, per_image_path, summary_path)


def _check_method(method: str) -> None:
    if method == GRAY:
        raise ValueError(f"method name {GRAY!r} is reserved for the baseline")


def _score(method: str, rel: str, L: np.ndarray, ab_true: np.ndarray, ab_pred: np.ndarray) -> list[dict]:
    """The model's row and the gray baseline's row for one image (L HxW, ab 2xHxW, Lab units)."""
    true_rgb = lab_to_rgb(L, ab_true)
    gray_rgb = lab_to_rgb(L, np.zeros_like(ab_true))
    return [
        {"image": rel, "method": method, **image_metrics(lab_to_rgb(L, ab_pred), true_rgb)},
        {"image": rel, "method": GRAY, **image_metrics(gray_rgb, true_rgb)},
    ]


def _finish(rows: list[dict], per_image_path, summary_path) -> list[dict]:
    """Sort the rows (model first, then gray, by image), summarise, write the TSVs, log; returns the summary."""
    rows.sort(key=lambda r: (r["method"] == GRAY, r["image"]))
    summary = summarize(rows)
    if per_image_path is not None:
        write_tsv(rows, per_image_path, PER_IMAGE_COLUMNS)
    if summary_path is not None:
        write_tsv(summary, summary_path, SUMMARY_COLUMNS)
    for row in summary:
        log.info(
            "%s: %d images, PSNR %.2f dB (%+.2f vs gray), SSIM %.4f, AuC %.4f, colorfulness %.1f (truth %.1f)",
            row["method"],
            row["n_images"],
            row["psnr"],
            row["psnr_minus_gray"],
            row["ssim"],
            row["auc"],
            row["colorfulness_pred"],
            row["colorfulness_true"],
        )
    return summary


def evaluate_folder(
    model: torch.nn.Module,
    folder: str | Path,
    image_size: int,
    resize_policy: str = "crop",
    per_image_path=None,
    summary_path=None,
    excluded_path=None,
    *,
    method: str = "model",
    max_pixels: int = PreprocessConfig.max_pixels,
    min_side: int = PreprocessConfig.min_side,
    gray_chroma_threshold: float = PreprocessConfig.gray_chroma_threshold,
    follow_external_links: bool = False,
    batch_size: int | None = None,
    workers: int = 2,
    progress: bool = False,
) -> tuple[list[dict], list[dict], list[dict]]:
    """``evaluate_shards`` for every file below ``folder`` (recursive); returns (per-image rows, summary, excluded).

    Each file goes through ``preprocess.prepare_image`` with ``image_size``, ``resize_policy``
    and the size and grayscale checks, exactly as a shard image does, so the numbers compare
    with the test split's. A file it refuses (unreadable, not an image, too small, grayscale,
    ...) is logged and listed in ``excluded`` (``EXCLUDED_COLUMNS``: image, reason), written to
    ``excluded_path`` when given; it never stops the evaluation. Relative paths name the images.
    Links that leave the folder are not followed unless ``follow_external_links`` (``manifest.walk``).
    """
    _check_method(method)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"evaluation folder {str(folder)!r} does not exist")
    model.eval()
    batch_size = batch_size or default_batch_size(model_device(model))
    cfg = PreprocessConfig(
        image_size=image_size, resize_policy=resize_policy, max_pixels=max_pixels, min_side=min_side,
        gray_chroma_threshold=gray_chroma_threshold,
    )  # fmt: skip
    listing = walk(folder, follow_external_links=follow_external_links)  # refused entries: listed as excluded
    relpaths = listing.files

    def load(rel: str):
        if not is_image_name(rel):  # as the scan stage says it
            return rel, None, f"not an image file (extension {Path(rel).suffix or 'none'!r})"
        try:
            return rel, prepare_image(folder / rel, cfg), ""
        except ImageDecodeError as e:
            return rel, None, e.reason
        except Exception as e:  # an unexpected decoder failure names the file, never stops the run
            return rel, None, f"decode failed ({type(e).__name__}: {e})"

    rows: list[dict] = []
    excluded: list[dict] = [{"image": rel, "reason": reason} for rel, reason in listing.refused.items()]
    bar = tqdm(total=len(relpaths), desc=f"evaluate {folder.name}", unit="img", disable=not progress)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="metrics") as pool:
        for start in range(0, len(relpaths), batch_size):
            batch = []
            for rel, lab, reason in pool.map(load, relpaths[start : start + batch_size]):
                if lab is None:
                    log.warning("excluded %s: %s", rel, reason)
                    excluded.append({"image": rel, "reason": reason})
                else:
                    batch.append((rel, lab))
            if batch:
                L = np.stack([lab[..., 0] for _, lab in batch])
                ab_true = np.stack([np.moveaxis(lab[..., 1:], -1, 0) for _, lab in batch])
                ab_pred = predict_l_batch(model, L)
                rels = [rel for rel, _ in batch]
                for pair in pool.map(lambda args: _score(method, *args), zip(rels, L, ab_true, ab_pred)):
                    rows.extend(pair)
            bar.update(min(batch_size, len(relpaths) - start))
    bar.close()
    log.info("%s: %d of %d files evaluated, %d excluded", folder, len(rows) // 2, len(relpaths), len(excluded))
    if excluded_path is not None:
        write_tsv(excluded, excluded_path, EXCLUDED_COLUMNS)
    return rows, _finish(rows, per_image_path, summary_path), excluded


def evaluate_checkpoint(
    checkpoint,
    test_shards,
    per_image_path,
    summary_path,
    *,
    method: str = "model",
    size: int | None = None,
    batch_size: int | None = None,
    device=None,
    workers: int = 2,
    progress: bool = False,
) -> list[dict]:
    """``evaluate_shards`` for a checkpoint file (the Snakemake script's one call); returns the summary."""
    model, _ = load_model(checkpoint, device)
    _, summary = evaluate_shards(
        model,
        test_shards,
        per_image_path,
        summary_path,
        method=method,
        size=size,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )
    return summary


def evaluate_folder_checkpoint(
    checkpoint,
    folder,
    per_image_path,
    summary_path,
    excluded_path=None,
    *,
    image_size: int | None = None,
    device=None,
    **kwargs,
) -> list[dict]:
    """``evaluate_folder`` for a checkpoint file (the Snakemake script's one call); returns the summary.

    ``image_size`` None uses the checkpoint's working size (the size of its training shards).
    Other keyword arguments go to ``evaluate_folder``.
    """
    model, ckpt = load_model(checkpoint, device)
    size = image_size or working_size(ckpt)
    _, summary, _ = evaluate_folder(model, folder, size, per_image_path=per_image_path, summary_path=summary_path,
                                    excluded_path=excluded_path, **kwargs)  # fmt: skip
    return summary
