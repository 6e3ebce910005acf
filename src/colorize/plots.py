"""Figures for the report: the Grayscale | Predicted | Ground truth grid, metric histograms.

Everything draws on a matplotlib ``Figure`` with the Agg canvas directly (no pyplot, no global
backend switch), so it runs headless, in threads and inside Snakemake jobs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .colorspace import lab_to_rgb
from .infer import load_model, predict_l_batch
from .metrics import GRAY
from .shards import shard_info, strings
from .tsv import read_tsv


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


def select_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (first and last included): deterministic, no seed."""
    if total <= 0 or n <= 0:
        return []
    if n >= total:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, n)})


def read_test_images(test_shards: Sequence, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images number ``indices`` of the shards taken in order: (L (n,H,W), ab (n,2,H,W)) float32, relpaths."""
    wanted = sorted(set(indices))
    L, ab, rel = [], [], []
    offset = 0
    for shard in test_shards:
        with h5py.File(shard, "r") as f:
            n = f["L"].shape[0]
            for i in wanted:
                if offset <= i < offset + n:
                    j = i - offset
                    L.append(f["L"][j].astype(np.float32))
                    ab.append(f["ab"][j].astype(np.float32))
                    rel.extend(strings([f["relpath"][j]]))
            offset += n
    if not L:
        return np.zeros((0, 0, 0), np.float32), np.zeros((0, 2, 0, 0), np.float32), []
    return np.stack(L), np.stack(ab), rel


def grid_figure(
    columns: dict[str, Sequence[np.ndarray]], row_labels: Sequence[str] = (), tile_inches: float = 2.0, dpi: int = 128
) -> Figure:
    """A figure of labelled image columns: ``{"Grayscale": [rgb, ...], "Predicted": [...], ...}``."""
    names = list(columns)
    n_rows = len(columns[names[0]])
    fig = Figure(figsize=(tile_inches * len(names), tile_inches * max(n_rows, 1) + 0.35), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(n_rows, 1), len(names), squeeze=False)
    for c, name in enumerate(names):
        axes[0, c].set_title(name, fontsize=11)
        for r in range(n_rows):
            ax = axes[r, c]
            ax.imshow(columns[name][r], interpolation="lanczos")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0 and r < len(row_labels):
                label = row_labels[r] if len(row_labels[r]) <= 28 else "…" + row_labels[r][-27:]
                ax.set_ylabel(label, fontsize=6)
    fig.subplots_adjust(
        left=0.06, right=0.99, bottom=0.01, top=1 - 0.35 / fig.get_figheight(), wspace=0.03, hspace=0.03
    )
    return fig


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
    L, ab, rel = read_test_images(test_shards, indices)
    if not rel:
        raise ValueError(f"no test images in {len(test_shards)} shard(s)")
    columns = {"Grayscale": [lab_to_rgb(x, np.zeros_like(a)) for x, a in zip(L, ab)]}
    columns[label] = [lab_to_rgb(x, a) for x, a in zip(L, predict_l_batch(model.eval(), L, size))]
    if other_model is not None:
        columns[other_label] = [lab_to_rgb(x, a) for x, a in zip(L, predict_l_batch(other_model.eval(), L, size))]
    columns["Ground truth"] = [lab_to_rgb(x, a) for x, a in zip(L, ab)]
    return _save(grid_figure(columns, rel), png_path)


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
        model, test_shards, png_path, n_rows, size=size, label=label, other_model=other, other_label=other_label
    )


def metric_histogram(per_image_tsv, png_path, metric: str = "psnr", bins: int = 30) -> Path:
    """Histogram of one per-image metric, one outline per method (e.g. model vs gray PSNR)."""
    rows = read_tsv(per_image_tsv)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    values = {m: np.array([float(r[metric]) for r in rows if r["method"] == m]) for m in methods}
    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    finite = np.concatenate([v for v in values.values()] or [np.zeros(1)])
    edges = np.histogram_bin_edges(finite, bins=bins)
    for m, v in values.items():
        ax.hist(
            v,
            bins=edges,
            histtype="step",
            linewidth=1.5,
            linestyle="--" if m == GRAY else "-",
            label=f"{m} (mean {v.mean():.3g})",
        )
    ax.set_xlabel(metric)
    ax.set_ylabel("images")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, png_path)
