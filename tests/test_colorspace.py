"""colorize.colorspace: Lab to RGB keeping lightness, and the channel-first planes equal to rgb_to_lab."""

from __future__ import annotations

import numpy as np
import pytest

from colorize.colorspace import lab_planes, lab_to_rgb, lightness, rgb_to_lab
from helpers import gradient_photo


def test_keep_lightness_shrinks_out_of_gamut_chroma_instead_of_clipping():
    rng = np.random.default_rng(0)
    L = rng.uniform(0, 100, (128, 128)).astype(np.float32)
    ab = rng.uniform(-110, 110, (128, 128, 2)).astype(np.float32)  # mostly out of gamut
    dL = lambda rgb: np.abs(rgb_to_lab(rgb)[..., 0] - L)  # noqa: E731
    assert (dL(lab_to_rgb(L, ab)) <= 1).mean() < 0.5  # plain clipping moves lightness
    kept = dL(lab_to_rgb(L, ab, keep_lightness=True))
    assert kept.max() <= 1.0  # shrinking chroma keeps it (8-bit rounding aside)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # in-gamut colours come back as they were
    lab = rgb_to_lab(rgb)
    assert np.abs(lab_to_rgb(lab[..., 0], lab[..., 1:], keep_lightness=True).astype(int) - rgb).max() <= 1


@pytest.mark.fast_path
def test_lab_planes_and_lightness_equal_rgb_to_lab():
    rgb = gradient_photo(33, 47, 5)
    ref = rgb_to_lab(rgb)
    assert np.array_equal(lab_planes(rgb), np.moveaxis(ref, -1, 0))
    assert np.array_equal(lab_planes(np.ascontiguousarray(rgb[..., ::-1]), "BGR"), np.moveaxis(ref, -1, 0))
    assert np.array_equal(lightness(rgb), ref[..., 0])
