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


@pytest.mark.fast_path
@pytest.mark.parametrize("gain", [1.0, 3.0, 6.0])
def test_gamut_safe_conversion_equals_the_full_image_check(gain):
    """The lightness check runs only on the pixels OpenCV clipped: the output equals the old
    full-image check within 1 level, except where the old one shrank pixels that are in the
    sRGB gamut (OpenCV's float round trip errs by > 0.2 L on dark saturated colours): those
    are now left as they are, as the docstring always promised."""
    import cv2

    from colorize.colorspace import _linear_rgb
    from helpers import lab_to_rgb_reference

    rng = np.random.default_rng(1)
    L = rgb_to_lab(gradient_photo(96, 128, 3))[..., 0]
    ab = cv2.resize(cv2.GaussianBlur(rng.normal(0, 30, (24, 32, 2)).astype(np.float32), (0, 0), 2) * gain, (128, 96))
    new, old = lab_to_rgb(L, ab, keep_lightness=True), lab_to_rgb_reference(L, ab)
    diff = np.abs(new.astype(int) - old.astype(int)).max(axis=-1)
    lin = _linear_rgb(L.reshape(-1), ab.reshape(-1, 2)).T.reshape(96, 128, 3)
    in_gamut = ((lin >= -1e-3) & (lin <= 1 + 1e-3)).all(axis=-1)
    assert diff[~in_gamut].max(initial=0) <= 1  # out of gamut: shrunk exactly as before
    assert (diff[in_gamut] > 1).mean() < 0.01  # in gamut: unchanged, or as the old spurious shrink left it
    plain = np.abs(new.astype(int) - lab_to_rgb(L, ab).astype(int)).max(axis=-1)
    assert plain[in_gamut].max(initial=0) <= 1  # in-gamut pixels are the plain conversion
    assert np.abs(rgb_to_lab(new)[..., 0] - L).max() <= 1.0  # lightness kept


@pytest.mark.fast_path
def test_conversion_in_bands_equals_the_whole_image(monkeypatch):
    import colorize.colorspace as colorspace

    rng = np.random.default_rng(2)
    L = rng.uniform(0, 100, (61, 37)).astype(np.float32)
    ab = rng.uniform(-90, 90, (61, 37, 2)).astype(np.float32)
    rgb = gradient_photo(61, 37, 4)
    monkeypatch.setattr(colorspace, "BAND_PIXELS", 1 << 40)
    whole = [lab_to_rgb(L, ab, keep_lightness=k) for k in (False, True)]
    whole_L = lightness(rgb)
    monkeypatch.setattr(colorspace, "BAND_PIXELS", 100)  # bands of 2 rows, the last one short
    for keep, ref in zip((False, True), whole):
        assert np.array_equal(lab_to_rgb(L, ab, keep_lightness=keep), ref)
    assert np.array_equal(lightness(rgb), whole_L) and np.array_equal(whole_L, rgb_to_lab(rgb)[..., 0])
