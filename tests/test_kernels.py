"""colorize.kernels: the numba loops give OpenCV's L bit for bit and its colours within a level."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from colorize import colorspace
from colorize.colorspace import (
    _lightness_opencv,
    _lightness_table,
    lab_to_rgb,
    lightness,
    pack_lightness,
)
from helpers import gradient_photo


def every_colour() -> np.ndarray:
    """A 4096 x 4096 image holding each of the 2^24 colours once (bytes b, g, r of 0..2^24-1)."""
    return np.ascontiguousarray(
        np.arange(1 << 24, dtype=np.uint32).view(np.uint8).reshape(4096, 4096, 4)[..., :3]
    )


def test_the_lightness_table_is_opencvs_float_conversion_for_every_colour():
    """The table (OpenCV's interpolation grid, interpolated in numba) against OpenCV converting
    each of the 2^24 colours itself: equal, in both channel orders, and what ``lightness`` gives."""
    img = every_colour()
    table = _lightness_table()
    assert np.array_equal(table.reshape(4096, 4096), _lightness_opencv(img, "BGR"))
    assert np.array_equal(lightness(img, "RGB", np.uint16), _lightness_opencv(img, "RGB"))
    assert np.array_equal(lightness(img, "BGR", np.uint16), table.reshape(4096, 4096))


def test_a_table_that_disagrees_with_opencv_is_rebuilt_by_opencv(monkeypatch):
    """If another OpenCV interpolated otherwise, the sample check sees it and every colour is
    converted by OpenCV instead: the table stays OpenCV's."""
    kernels = colorspace._kernels()
    monkeypatch.setattr(
        kernels, "fill_lightness_table", lambda grid, fixed, packed, table: table.fill(7)
    )
    _lightness_table.cache_clear()
    try:
        table = _lightness_table()
        sample = np.random.default_rng(5).integers(0, 1 << 24, 5000).astype(np.uint32)
        px = np.ascontiguousarray(sample.view(np.uint8).reshape(-1, 4)[None, :, :3])
        assert np.array_equal(table[sample], _lightness_opencv(px, "BGR").reshape(-1))
    finally:
        _lightness_table.cache_clear()


def test_small_images_take_opencv_and_large_ones_the_table_with_the_same_bits(monkeypatch):
    img = gradient_photo(40, 50, 2)
    monkeypatch.setattr(colorspace, "TABLE_LIGHTNESS_PIXELS", 1 << 40)
    _lightness_table.cache_clear()
    plain = lightness(img, "RGB", np.uint16)
    monkeypatch.setattr(colorspace, "TABLE_LIGHTNESS_PIXELS", 1)
    assert np.array_equal(lightness(img, "RGB", np.uint16), plain)
    assert np.array_equal(plain, pack_lightness(lightness(img, "RGB")))


def test_srgb_levels_round_as_the_exact_curve():
    """The sRGB curve as a polynomial in t^(1/4): every level equals round(255 * srgb(t)) in
    float64 except within 0.001 of a half level (float32 rounding), and never by more than 1."""
    from colorize.kernels import _row_levels

    t = np.concatenate([np.linspace(0, 1, 2_000_001), np.geomspace(1e-7, 1, 200_001)]).astype(
        np.float32
    )
    t64 = t.astype(np.float64)
    exact = 255 * np.where(t64 <= 0.0031308, 12.92 * t64, 1.055 * t64 ** (1 / 2.4) - 0.055)
    got = np.empty(t.size, np.uint8)
    _row_levels(t, got)
    diff = got.astype(int) - np.floor(exact + 0.5).astype(int)
    near_tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    assert np.abs(diff).max() <= 1 and not diff[~near_tie].any()
    odd = np.array([np.nan, -np.inf, -0.5, 0.0, 1.0, 1.5, np.inf], np.float32)
    out = np.empty(odd.size, np.uint8)
    _row_levels(odd, out)
    assert out.tolist() == [0, 0, 0, 0, 255, 255, 255]


def _photo_like(h: int, w: int, gain: float, seed: int):
    rng = np.random.default_rng(seed)
    L = colorspace.rgb_to_lab(gradient_photo(h, w, 3))[..., 0]
    ab = cv2.GaussianBlur(
        rng.normal(0, 30, (max(2, h // 8), max(2, w // 8), 2)).astype(np.float32), (0, 0), 1.5
    )
    return L, ab * gain


@pytest.mark.parametrize(
    "shape,gain", [((96, 128), 1.0), ((183, 257), 3.0), ((61, 37), 6.0), ((5, 3), 2.0)]
)
def test_the_loop_is_the_opencv_conversion_within_one_level(shape, gain):
    """Against the band-wise OpenCV conversion (engine "opencv") with the same gamut fit: within
    one level everywhere, equal almost everywhere, for small ab upsampled and for full-size ab,
    float and packed L, RGB and BGR."""
    L, ab = _photo_like(*shape, gain, seed=shape[0])
    for ab_in in (ab, cv2.resize(ab, shape[::-1], interpolation=cv2.INTER_LINEAR)):
        for L_in in (L, pack_lightness(L)):
            fast = lab_to_rgb(L_in, ab_in, keep_lightness=True)
            ref = lab_to_rgb(L_in, ab_in, keep_lightness=True, engine="opencv")
            diff = np.abs(fast.astype(int) - ref.astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01
            assert np.array_equal(
                lab_to_rgb(L_in, ab_in, keep_lightness=True, order="BGR"), fast[..., ::-1]
            )
            assert (
                np.abs(
                    colorspace.rgb_to_lab(fast)[..., 0] - colorspace.unpack_lightness(L_in)
                ).max()
                <= 1.0
            )


def test_nan_and_infinite_predictions_come_out_gray_not_as_a_crash():
    L = np.full((8, 9), 60.0, np.float32)
    ab = np.full((8, 9, 2), 20.0, np.float32)
    ab[2, 3] = np.nan
    ab[4, 5, 0] = np.inf
    ab[6, 1, 1] = -np.inf
    out = lab_to_rgb(L, ab, keep_lightness=True)
    gray = lab_to_rgb(L, np.zeros_like(ab), keep_lightness=True)
    for y, x in [(2, 3), (4, 5), (6, 1)]:
        assert np.array_equal(out[y, x], gray[y, x])
    assert np.array_equal(out[0, 0], lab_to_rgb(L, np.full_like(ab, 20), keep_lightness=True)[0, 0])


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine"):
        lab_to_rgb(
            np.zeros((2, 2), np.float32),
            np.zeros((2, 2, 2), np.float32),
            keep_lightness=True,
            engine="gpu",
        )


def test_the_tables_are_built_once_when_threads_ask_together(monkeypatch):
    """colorize_files' decode threads all want the L table first: one builds it, the others wait."""
    from concurrent.futures import ThreadPoolExecutor

    kernels = colorspace._kernels()
    fill, calls = kernels.fill_lightness_table, []
    monkeypatch.setattr(kernels, "fill_lightness_table", lambda *a: (calls.append(1), fill(*a)))
    _lightness_table.cache_clear()
    try:
        with ThreadPoolExecutor(4) as pool:
            tables = list(pool.map(lambda _: _lightness_table(), range(4)))
        assert len(calls) == 1 and all(t is tables[0] for t in tables)
    finally:
        _lightness_table.cache_clear()
