"""Evaluation drivers: run a model (and the gray baseline, ab = 0) over the test shards or any
folder of photos, score each image (``colorize.metrics``) and write the tables and grids the
Snakemake rules declare.

``evaluate_shards`` scores the test split; ``evaluate_folder`` does the same for any folder of
photos (e.g. another data set, out of the training domain), decoding each file exactly as the
shards were made (``preprocess.prepare_image`` with the same ``PreprocessConfig``);
``comparison_grid`` draws Grayscale | Predicted | Ground truth for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_model, working_size
from .colorspace import lab_to_rgb
from .imageio import ImageDecodeError, is_image_name
from .manifest import source_of as first_component
from .manifest import walk
from .metrics import (
    BY_SOURCE_COLUMNS,
    GRAY,
    PER_IMAGE_COLUMNS,
    SUMMARY_COLUMNS,
    image_metrics,
    summarize,
    summarize_by_source,
)
from .plots import grid_figure, save_figure, select_indices
from .predict import batch_size_for, predict_l_batch
from .preprocess import PreprocessConfig, prepare_image
from .shards import iter_batches, read_images, shard_info
from .tsv import write_tsv

log = logging.getLogger("colorize.evaluate")

EXCLUDED_COLUMNS = ("image", "reason")


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
    by_source_path=None,
    source_of=first_component,
) -> tuple[list[dict], list[dict]]:
    """Score ``model`` and the gray baseline on every test image; returns (per-image rows, summary rows).

    ``by_source_path``, when given, gets the summary per source (``BY_SOURCE_COLUMNS``), the
    source of an image being ``source_of(its name)``: by default the first component of its
    path, which is the source name in a multi-source dataset (``manifest.scan``).

    ``method`` names the model's rows (the baseline's are ``"gray"``). ``size`` None predicts at
    the shard's size; another value goes through that working size as full-resolution
    inference does. When given, ``per_image_path`` gets ``PER_IMAGE_COLUMNS`` and
    ``summary_path`` gets ``SUMMARY_COLUMNS`` (one row per method).
    """
    _check_method(method)
    model.eval()
    batch_size = batch_size_for(model, batch_size)
    rows: list[dict] = []
    bar = tqdm(desc="evaluate", unit="img", disable=not progress)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="metrics") as pool:
        for shard in test_shards:
            for L, ab_true, rel in iter_batches(shard, batch_size):
                ab_pred = predict_l_batch(model, L, size)
                for pair in pool.map(
                    lambda args: _score(method, *args), zip(rel, L, ab_true, ab_pred)
                ):
                    rows.extend(pair)
                bar.update(len(rel))
    bar.close()
    summary = _finish(rows, per_image_path, summary_path)
    if by_source_path is not None:
        write_tsv(summarize_by_source(rows, source_of), by_source_path, BY_SOURCE_COLUMNS)
    return rows, summary


def _check_method(method: str) -> None:
    if method == GRAY:
        raise ValueError(f"method name {GRAY!r} is reserved for the baseline")


def _score(
    method: str, rel: str, L: np.ndarray, ab_true: np.ndarray, ab_pred: np.ndarray
) -> list[dict]:
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
            "%s: %d images, PSNR %.2f dB (%+.2f vs gray), SSIM %.4f, AuC %.4f, colorfulness %.1f (truth %.1f), "
            "vivid hits %.1f %% per image, %.1f %% pooled",
            row["method"],
            row["n_images"],
            row["psnr"],
            row["psnr_minus_gray"],
            row["ssim"],
            row["auc"],
            row["colorfulness_pred"],
            row["colorfulness_true"],
            100 * row["vivid_hits_image_mean"],
            100 * row["vivid_hits_pooled"],
        )
    return summary


def evaluate_folder(
    model: torch.nn.Module,
    folder: str | Path,
    preprocess: PreprocessConfig,
    per_image_path=None,
    summary_path=None,
    excluded_path=None,
    *,
    method: str = "model",
    follow_external_links: bool = False,
    batch_size: int | None = None,
    workers: int = 2,
    progress: bool = False,
) -> tuple[list[dict], list[dict], list[dict]]:
    """``evaluate_shards`` for every file below ``folder`` (recursive); returns (per-image rows, summary, excluded).

    Each file goes through ``preprocess.prepare_image`` with ``preprocess`` (image size, resize
    policy, size and grayscale checks), exactly as a shard image does, so the numbers compare
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
    batch_size = batch_size_for(model, batch_size)
    listing = walk(
        folder, follow_external_links=follow_external_links
    )  # refused entries: listed as excluded
    relpaths = listing.files

    def load(rel: str):
        if not is_image_name(rel):  # as the scan stage says it
            return rel, None, f"not an image file (extension {Path(rel).suffix or 'none'!r})"
        try:
            return rel, prepare_image(folder / rel, preprocess), ""
        except ImageDecodeError as e:
            return rel, None, e.reason
        except Exception as e:  # an unexpected decoder failure names the file, never stops the run
            return rel, None, f"decode failed ({type(e).__name__}: {e})"

    rows: list[dict] = []
    excluded: list[dict] = [
        {"image": rel, "reason": reason} for rel, reason in listing.refused.items()
    ]
    bar = tqdm(
        total=len(relpaths), desc=f"evaluate {folder.name}", unit="img", disable=not progress
    )
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
                for pair in pool.map(
                    lambda args: _score(method, *args), zip(rels, L, ab_true, ab_pred)
                ):
                    rows.extend(pair)
            bar.update(min(batch_size, len(relpaths) - start))
    bar.close()
    log.info(
        "%s: %d of %d files evaluated, %d excluded",
        folder,
        len(rows) // 2,
        len(relpaths),
        len(excluded),
    )
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
    by_source_path=None,
    single_source: str | None = None,
) -> list[dict]:
    """``evaluate_shards`` for a checkpoint file (the Snakemake script's one call); returns the summary.

    ``single_source``: the name of the one source of a single-folder dataset (every image is
    its); None: a multi-source dataset, each image's source is its path's first component."""
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
        by_source_path=by_source_path,
        source_of=first_component if single_source is None else (lambda _image: single_source),
    )
    return summary


def evaluate_folder_checkpoint(
    checkpoint,
    folder,
    per_image_path,
    summary_path,
    excluded_path=None,
    *,
    preprocess: dict | None = None,
    device=None,
    **kwargs,
) -> list[dict]:
    """``evaluate_folder`` for a checkpoint file (the Snakemake script's one call); returns the summary.

    ``preprocess``: ``PreprocessConfig`` fields (the workflow's preprocessing settings); without
    ``image_size`` the checkpoint's working size (the size of its training shards) is used.
    Other keyword arguments go to ``evaluate_folder``.
    """
    model, ckpt = load_model(checkpoint, device)
    settings = dict(preprocess or {})
    settings["image_size"] = settings.get("image_size") or working_size(ckpt)
    _, summary, _ = evaluate_folder(model, folder, PreprocessConfig(**settings), per_image_path=per_image_path,
                                    summary_path=summary_path, excluded_path=excluded_path, **kwargs)  # fmt: skip
    return summary


def comparison_grid(
    model: torch.nn.Module,
    test_shards: Sequence,
    png_path,
    n_rows: int = 8,
    *,
    size: int | None = None,
    label: str = "Predicted",
    other_model: torch.nn.Module | None = None,
    other_label: str = "Other model",
) -> Path:
    """Grayscale | Predicted | [other model] | Ground truth for ``n_rows`` test images, as a PNG.

    The rows are spread evenly over the test split (``select_indices``), so every run and every
    model shows the same images.
    """
    indices = select_indices(sum(shard_info(s)[0] for s in test_shards), n_rows)
    L, ab, rel = read_images(test_shards, indices)
    if not rel:
        raise ValueError(f"no test images in {len(test_shards)} shard(s)")
    columns = {"Grayscale": [lab_to_rgb(x, np.zeros_like(a)) for x, a in zip(L, ab)]}
    columns[label] = [lab_to_rgb(x, a) for x, a in zip(L, predict_l_batch(model.eval(), L, size))]
    if other_model is not None:
        columns[other_label] = [
            lab_to_rgb(x, a) for x, a in zip(L, predict_l_batch(other_model.eval(), L, size))
        ]
    columns["Ground truth"] = [lab_to_rgb(x, a) for x, a in zip(L, ab)]
    return save_figure(grid_figure(columns, rel), png_path)


def grid_from_checkpoints(
    checkpoint,
    test_shards: Sequence,
    png_path,
    n_rows: int = 8,
    *,
    size: int | None = None,
    label: str = "Predicted",
    other_checkpoint=None,
    other_label: str = "Other model",
    device=None,
) -> Path:
    """``comparison_grid`` for checkpoint files (the Snakemake script's one call)."""
    model, _ = load_model(checkpoint, device)
    other = load_model(other_checkpoint, device)[0] if other_checkpoint else None
    return comparison_grid(
        model,
        test_shards,
        png_path,
        n_rows,
        size=size,
        label=label,
        other_model=other,
        other_label=other_label,
    )
