"""Colour worth keeping? Models against leaving the photo gray, the way a user sees them.

Protocol (issue 10): every photo of a folder is centre-cropped to a square and resized to
``--size`` (256, INTER_AREA), made gray (only its Lab L is kept) and colorized through the
inference path of ``colorize predict`` (``infer.colorize_arrays``: L at the model's working
size, ab resized back and recombined with the full-size L). Scored on 8-bit RGB against the
true colours:

- PSNR of the colorized photo and of the gray one ("gray": the baseline to beat);
- chroma: mean Lab chroma of the prediction / of the truth (100 % = as colourful as life);
- colourfulness: Hasler-Suesstrunk of the prediction / of the truth, means over the photos;
- vivid hits (``colorize.metrics.vivid_hits``): of the pixels whose true chroma is >= 20, the
  share predicted within 20 ab of the truth; "vivid %" is the mean over the photos that have a
  vivid pixel, "vivid pooled %" hits over all vivid pixels of the folder.

Grayscale photos (mean chroma below 3, as the shards exclude them) are left out and counted.

    python benchmarks/quality.py --model shipped results/x/models/unet/best.pt \\
        --folder ../shared/data/intel_natural/test ../shared/data/bsds500/val [--grid out.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_table  # noqa: E402
from colorize.checkpoint import load_model, working_size  # noqa: E402
from colorize.colorspace import lab_to_rgb, mean_chroma, rgb_to_lab  # noqa: E402
from colorize.imageio import ImageDecodeError, load_image  # noqa: E402
from colorize.manifest import list_files  # noqa: E402
from colorize.metrics import (  # noqa: E402,E501
    ab_of_rgb,
    colorfulness,
    image_mean_vivid_hits,
    pooled_vivid_hits,
    psnr,
    vivid_hit_counts,
)
from colorize.predict import colorize_arrays  # noqa: E402
from colorize.preprocess import resize_square  # noqa: E402
from colorize.shipped import resolve_checkpoint  # noqa: E402

GRAY_CHROMA = 3.0


def load_folder(
    folder: Path, size: int, limit: int | None = None
) -> tuple[list[str], list[np.ndarray], int]:
    names, photos, gray = [], [], 0
    for rel in list_files(folder):
        try:
            rgb = resize_square(load_image(folder / rel), size, "crop")
        except ImageDecodeError:
            continue
        if mean_chroma(rgb_to_lab(rgb)[..., 1:]) < GRAY_CHROMA:
            gray += 1
            continue
        names.append(rel)
        photos.append(rgb)
        if limit and len(photos) >= limit:
            break
    return names, photos, gray


def gray_of(rgb: np.ndarray) -> np.ndarray:
    lab = rgb_to_lab(rgb)
    return lab_to_rgb(lab[..., 0], np.zeros(lab.shape[:2] + (2,), np.float32), keep_lightness=True)


def score(preds: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    p = float(np.mean([psnr(a, b) for a, b in zip(preds, truths)]))
    chroma = float(np.mean([mean_chroma(ab_of_rgb(a)) for a in preds]))
    colour = float(np.mean([colorfulness(a) for a in preds]))
    vivid = []
    for a, b in zip(preds, truths):
        hits, n = vivid_hit_counts(ab_of_rgb(a), ab_of_rgb(b))
        vivid.append({"vivid_hits": hits / n if n else float("nan"), "vivid_pixels": n})
    return {
        "psnr": p,
        "chroma": chroma,
        "colourfulness": colour,
        "vivid": image_mean_vivid_hits(vivid),
        "vivid_pooled": pooled_vivid_hits(vivid),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=["shipped"], help="checkpoints, or 'shipped'")
    ap.add_argument("--folder", nargs="+", type=Path, required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None, help="at most this many photos per folder")
    ap.add_argument(
        "--temperature",
        type=float,
        nargs="*",
        default=None,
        help="zhang models: decode at each of these annealed-mean temperatures",
    )
    ap.add_argument(
        "--chroma-gain",
        type=float,
        nargs="*",
        default=None,
        help="mse and l1 models: decode with each of these gains on the predicted ab",
    )
    ap.add_argument(
        "--grid", type=Path, default=None, help="write a comparison grid PNG per folder (suffixed)"
    )
    ap.add_argument("--grid-rows", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}")

    models = []
    for m in args.model:
        model, ckpt = load_model(resolve_checkpoint(m), "cpu")
        label = Path(m).parent.name if m != "shipped" else "shipped"
        if args.temperature and hasattr(model.head, "temperature"):
            knobs = [("temperature", t, f" T={t}") for t in args.temperature]
        elif args.chroma_gain and hasattr(model.head, "chroma_gain"):
            knobs = [("chroma_gain", g, f" gain={g}") for g in args.chroma_gain]
        else:
            knobs = [(None, None, "")]
        for attr, value, suffix in knobs:
            models.append((label + suffix, model, ckpt, (attr, value)))

    rows = []
    for folder in args.folder:
        names, truths, n_gray = load_folder(folder, args.size, args.limit)
        grays = [gray_of(t) for t in truths]
        base = score(grays, truths)
        truth = score(truths, truths)
        tag = f"{folder.parent.name}/{folder.name}"
        rows.append(
            {
                "folder": tag,
                "model": "gray (the input)",
                "photos": len(truths),
                "PSNR": base["psnr"],
                "vs gray dB": 0.0,
                "chroma %": 0.0,
                "colourfulness %": 0.0,
                "vivid %": 100 * base["vivid"],
                "vivid pooled %": 100 * base["vivid_pooled"],
                "img/s": "",
            }
        )
        columns = {"Gray": grays}
        for label, model, ckpt, (attr, value) in models:
            if attr is not None:
                setattr(model.head, attr, value)
            t0 = time.perf_counter()
            preds = colorize_arrays(model, truths, size=working_size(ckpt))
            rate = len(preds) / (time.perf_counter() - t0)
            s = score(preds, truths)
            rows.append(
                {
                    "folder": tag,
                    "model": label,
                    "photos": len(truths),
                    "PSNR": s["psnr"],
                    "vs gray dB": s["psnr"] - base["psnr"],
                    "chroma %": 100 * s["chroma"] / truth["chroma"],
                    "colourfulness %": 100 * s["colourfulness"] / truth["colourfulness"],
                    "vivid %": 100 * s["vivid"],
                    "vivid pooled %": 100 * s["vivid_pooled"],
                    "img/s": rate,
                }
            )
            columns[label] = preds
        columns["Ground truth"] = truths
        print(
            f"{tag}: {len(truths)} photos ({n_gray} grayscale left out); truth chroma {truth['chroma']:.1f}, "
            f"colourfulness {truth['colourfulness']:.1f}",
            flush=True,
        )
        if args.grid:
            from colorize.plots import grid_figure

            pick = np.linspace(0, len(truths) - 1, min(args.grid_rows, len(truths))).astype(int)
            out = args.grid.with_name(f"{args.grid.stem}_{folder.name}{args.grid.suffix}")
            fig = grid_figure(
                {k: [v[i] for i in pick] for k, v in columns.items()}, [names[i] for i in pick]
            )
            fig.savefig(out)
            print(f"grid: {out}")
    print_table(rows, f"Colorization vs gray at {args.size}x{args.size} (8-bit RGB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
