"""Figures for the report, drawn from arrays and tables: the image grid and the loss curve.

Everything draws on a matplotlib ``Figure`` with the Agg canvas directly (no pyplot, no global
backend switch), so it runs headless, in threads and inside Snakemake jobs. Nothing here runs
a model: ``evaluate.comparison_grid`` predicts and hands the images to ``grid_figure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .files import atomic_path


def save_figure(fig: Figure, path) -> Path:
    """Save as the extension says, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return Path(path)


def select_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (first and last included): deterministic, no seed."""
    if total <= 0 or n <= 0:
        return []
    if n >= total:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, n)})


def grid_figure(
    columns: dict[str, Sequence[np.ndarray]],
    row_labels: Sequence[str] = (),
    tile_inches: float = 2.0,
    dpi: int = 128,
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
        left=0.06,
        right=0.99,
        bottom=0.01,
        top=1 - 0.35 / fig.get_figheight(),
        wspace=0.03,
        hspace=0.03,
    )
    return fig


def plot_history(history: list[dict], path, title: str = "") -> Path:
    """Loss per epoch (train, validation) and validation PSNR on a second axis, as a PNG."""
    from matplotlib.ticker import MaxNLocator

    def column(name):
        return [np.nan if row.get(name) is None else row[name] for row in history]

    epochs = column("epoch")
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(epochs, column("train_loss"), "o-", ms=3, label="train loss")
    ax.plot(epochs, column("val_loss"), "s-", ms=3, label="validation loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(epochs, column("val_psnr"), "^-", ms=3, color="tab:green", label="validation PSNR")
    ax2.set_ylabel("validation PSNR (dB, RGB)")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper center", fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
