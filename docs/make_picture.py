"""The README's picture: one photo as the model sees it (gray), as the shipped model colours
it, and as it was (the truth), side by side, with the PSNR of each against the truth.

    .venv/bin/python docs/make_picture.py                 # -> docs/images/example.jpg
    .venv/bin/python docs/make_picture.py --photo PATH --out OUT.jpg

The photo is from ``../shared/data/bsds500/val`` (held out from the shipped model's training;
BSDS500: Corel photos distributed by Berkeley for non-commercial research and education). Its
lightness goes through ``colorize predict``'s path (``shipped.load_for_inference``,
``predict.colorize_arrays``: the working size, the colour resized back to the photo's size,
the photo's own L kept).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from colorize.colorspace import lab_to_rgb, lightness
from colorize.imageio import read_rgb
from colorize.metrics import psnr
from colorize.plots import grid_figure, save_figure
from colorize.predict import colorize_arrays
from colorize.runtime import working_size
from colorize.shipped import load_for_inference

HERE = Path(__file__).resolve().parent
PHOTO = HERE.parent / "../shared/data/bsds500/val/291000.jpg"


def picture(photo: Path, out: Path, tile_inches: float = 2.6, dpi: int = 130) -> Path:
    """Gray | shipped model | truth of ``photo`` as a JPEG at ``out``; returns ``out``."""
    truth = read_rgb(photo)
    model, info = load_for_inference(None, "cpu")
    (predicted,) = colorize_arrays(model, [truth], size=working_size(info))
    L = lightness(truth, "RGB")
    gray = lab_to_rgb(L, np.zeros((2, *L.shape), np.float32))
    columns = {
        f"Gray (the input), {psnr(gray, truth):.1f} dB": [gray],
        f"Shipped model, {psnr(predicted, truth):.1f} dB": [predicted],
        "Truth": [truth],
    }
    fig = grid_figure(columns, tile_inches=tile_inches * truth.shape[0] / truth.shape[1], dpi=dpi)
    fig.set_size_inches(tile_inches * 3, tile_inches * truth.shape[0] / truth.shape[1] + 0.35)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out)
    return out


def main() -> None:
    """Write the picture (the command line above)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--photo", type=Path, default=PHOTO, help="a colour photo (default: %(default)s)"
    )
    ap.add_argument("--out", type=Path, default=HERE / "images/example.jpg")
    args = ap.parse_args()
    out = picture(args.photo, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
