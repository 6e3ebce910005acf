"""colorize.metrics: each metric against values worked out independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from colorize.colorspace import lab_to_rgb
from colorize.metrics import (
    METRIC_COLUMNS,
    PSNR_CAP,
    ab_error_auc,
    colorfulness,
    image_metrics,
    psnr,
    ssim,
    summarize,
    vivid_hit_counts,
    vivid_hits,
)
from helpers import ab_error_curve


def test_psnr_by_hand():
    true = np.full((4, 5, 3), 10, np.uint8)
    pred = np.zeros_like(true)
    assert psnr(pred, true) == pytest.approx(10 * math.log10(255**2 / 100))  # MSE 100 -> 28.13 dB
    pred[0, 0, 0] = 255  # one channel of one pixel off by 245, the rest by 10
    mse = (245**2 + 59 * 100) / 60
    assert psnr(pred, true) == pytest.approx(10 * math.log10(255**2 / mse))
    assert psnr(true, true) == PSNR_CAP


def test_ssim_of_constant_images_by_formula():
    """Constant images: zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 255)^2."""
    a, b = 100.0, 150.0
    c1 = (0.01 * 255) ** 2
    x, y = np.full((16, 16, 3), a, np.uint8), np.full((16, 16, 3), b, np.uint8)
    assert ssim(x, y) == pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1), rel=1e-6)
    rng = np.random.default_rng(0)
    z = rng.integers(0, 256, (20, 24, 3), np.uint8)
    assert ssim(z, z) == pytest.approx(1.0)
    w = np.clip(z.astype(int) + rng.integers(-30, 30, z.shape), 0, 255).astype(np.uint8)
    assert ssim(z, w) == pytest.approx(structural_similarity(z, w, channel_axis=-1, data_range=255))


def test_colorfulness_on_an_image_with_known_statistics():
    """Half (200, 100, 50), half gray: rg in {100, 0}, yb in {100, 0}: means 50, standard deviations 50."""
    img = np.zeros((10, 10, 3), np.uint8)
    img[:5] = (200, 100, 50)
    img[5:] = (100, 100, 100)
    expected = math.hypot(50, 50) + 0.3 * math.hypot(50, 50)  # 1.3 * 70.71 = 91.92
    assert colorfulness(img) == pytest.approx(expected)
    assert colorfulness(np.full((8, 8, 3), 77, np.uint8)) == 0.0


def test_chroma_of_gray_is_zero_and_of_a_known_colour_is_its_chroma():
    gray = np.repeat(
        np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2
    )  # every gray level
    m = image_metrics(gray, gray)
    assert m["chroma_pred"] == 0.0 and m["colorfulness_pred"] == 0.0 and m["auc"] == 1.0
    colour = lab_to_rgb(np.full((8, 8), 60.0), np.broadcast_to(np.array([30.0, 40.0]), (8, 8, 2)))
    assert image_metrics(colour, gray[:8, :8])["chroma_pred"] == pytest.approx(
        50.0, abs=1.0
    )  # hypot(30, 40)


def ab_pair(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two ab maps whose per-pixel L2 distances are ``distances`` (in changing directions)."""
    angle = np.linspace(0, 2 * np.pi, distances.size).reshape(distances.shape)
    true = np.zeros((*distances.shape, 2))
    pred = np.stack([distances * np.cos(angle), distances * np.sin(angle)], axis=-1)
    return pred, true


def test_auc_on_error_maps_with_known_answers():
    d = np.zeros((10, 10))
    assert ab_error_auc(*ab_pair(d)) == 1.0
    assert ab_error_auc(*ab_pair(d + 150)) == pytest.approx(0.0, abs=1e-12)
    assert ab_error_auc(*ab_pair(d + 400)) == 0.0
    half = d.copy()
    half[5:] = 75  # CDF 0.5 on [0, 75), 1 on [75, 150]: area (0.5 * 75 + 75) / 150 = 0.75
    assert ab_error_auc(*ab_pair(half)) == pytest.approx(0.75)
    uniform = np.linspace(0, 150, 100_001).reshape(1, -1)  # CDF t / 150: area 1/2
    assert ab_error_auc(*ab_pair(uniform)) == pytest.approx(0.5, abs=1e-5)
    # The exact area equals the area under the sampled curve as the sampling gets finer.
    rng = np.random.default_rng(0)
    pred, true = rng.normal(0, 40, (50, 50, 2)), rng.normal(0, 40, (50, 50, 2))
    t, frac = ab_error_curve(pred, true, np.linspace(0, 150, 30_001))
    assert ab_error_auc(pred, true) == pytest.approx(np.trapezoid(frac, t) / 150, abs=1e-4)
    t, frac = ab_error_curve(pred, true)  # the paper's integer thresholds: within 1/(2*150)
    assert ab_error_auc(pred, true) == pytest.approx(np.trapezoid(frac, t) / 150, abs=1 / 300)


# --- vivid hits (issue 20) -------------------------------------------------------------------


def _patch(a: float, b: float, shape=(12, 16)) -> np.ndarray:
    """An HxWx2 ab field of one colour."""
    ab = np.zeros(shape + (2,))
    ab[..., 0], ab[..., 1] = a, b
    return ab


def test_vivid_hits_gray_scores_zero_and_the_truth_one():
    true = _patch(40.0, 30.0)  # chroma 50
    assert vivid_hits(np.zeros_like(true), true) == 0.0
    assert vivid_hits(true, true) == 1.0


def test_vivid_hits_of_a_hue_rotated_by_90_degrees_is_zero():
    true = _patch(40.0, 30.0)
    rotated = _patch(-30.0, 40.0)  # same chroma, hue + 90 degrees: 50 * sqrt(2) = 70.7 away
    assert vivid_hits(rotated, true) == pytest.approx(0.0)


def test_vivid_hits_of_a_half_strength_prediction_is_below_one():
    true = _patch(60.0, 45.0)  # chroma 75: half strength is 37.5 away, a miss
    assert vivid_hits(true / 2, true) < 1.0
    assert vivid_hits(true / 2, true) == 0.0
    mild = _patch(24.0, 18.0)  # chroma 30: half strength is 15 away, within 20: a hit
    assert vivid_hits(mild / 2, mild) == 1.0


def test_vivid_hits_counts_only_vivid_true_pixels_and_is_nan_without_any():
    true = _patch(40.0, 30.0, (4, 10))
    true[:, :5] = (5.0, 5.0)  # half the pixels muted (chroma 7): not counted
    pred = np.zeros_like(true)
    pred[:2] = true[:2]  # right on the first two rows: 2 x 5 of the 4 x 5 vivid pixels
    assert vivid_hit_counts(pred, true) == (10, 20)
    assert vivid_hits(pred, true) == 0.5
    muted = _patch(5.0, 5.0)
    assert math.isnan(vivid_hits(muted, muted))  # nothing vivid to hit: excluded, not 0 or 1


def test_vivid_hits_threshold_is_inclusive_and_radius_strict():
    true = _patch(20.0, 0.0, (1, 1))  # chroma exactly 20: vivid
    assert vivid_hit_counts(true, true) == (1, 1)
    assert vivid_hits(_patch(0.0, 0.0, (1, 1)), true) == 0.0  # gray is exactly 20 away: a miss
    assert vivid_hits(_patch(20.0, 19.9, (1, 1)), true) == 1.0
    assert math.isnan(vivid_hits(true, _patch(19.9, 0.0, (1, 1))))  # chroma 19.9: not vivid


def test_image_metrics_and_summary_report_vivid_hits_per_image_and_pooled():
    L = np.full((8, 8), 55.0, np.float32)
    true_rgb = lab_to_rgb(
        L, np.stack([np.full((8, 8), 40.0), np.full((8, 8), 30.0)]).astype(np.float32)
    )
    gray_rgb = lab_to_rgb(L, np.zeros((2, 8, 8), np.float32))
    m = image_metrics(true_rgb, true_rgb)
    assert m["vivid_hits"] == 1.0 and m["vivid_pixels"] == 64
    g = image_metrics(gray_rgb, true_rgb)
    assert g["vivid_hits"] == 0.0 and g["vivid_pixels"] == 64
    none = image_metrics(gray_rgb, gray_rgb)
    assert math.isnan(none["vivid_hits"]) and none["vivid_pixels"] == 0
    # two images of one method: 1 of 1 vivid pixel hit, 1 of 3 hit, and one with no vivid pixel
    base = {k: 0.0 for k in METRIC_COLUMNS}
    rows = [
        {"image": "a", "method": "m", **base, "vivid_hits": 1.0, "vivid_pixels": 1},
        {"image": "b", "method": "m", **base, "vivid_hits": 1 / 3, "vivid_pixels": 3},
        {"image": "c", "method": "m", **base, "vivid_hits": math.nan, "vivid_pixels": 0},
    ]
    (row,) = summarize(rows)
    assert row["vivid_hits_image_mean"] == pytest.approx((1 + 1 / 3) / 2)  # c left out
    assert row["vivid_hits_pooled"] == pytest.approx(2 / 4)
    (row,) = summarize(rows[2:])
    assert math.isnan(row["vivid_hits_image_mean"]) and math.isnan(row["vivid_hits_pooled"])


def test_summary_by_source_and_the_weakest_source():
    from colorize.manifest import source_of
    from colorize.metrics import summarize_by_source, weakest_source

    base = {k: 0.0 for k in METRIC_COLUMNS}
    rows = []
    for image, psnr_model in (
        ("flowers/a.jpg", 25.0),
        ("flowers/b.jpg", 27.0),
        ("faces/c.jpg", 21.0),
    ):
        rows.append(
            {
                "image": image,
                "method": "m",
                **base,
                "psnr": psnr_model,
                "vivid_hits": 0.5,
                "vivid_pixels": 2,
            }
        )
        rows.append(
            {
                "image": image,
                "method": "gray",
                **base,
                "psnr": 22.0,
                "vivid_hits": 0.0,
                "vivid_pixels": 2,
            }
        )
    table = summarize_by_source(rows, source_of)
    assert [(r["source"], r["method"], r["n_images"]) for r in table] == [
        ("flowers", "m", 2),
        ("flowers", "gray", 2),
        ("faces", "m", 1),
        ("faces", "gray", 1),
    ]
    assert table[0]["psnr_minus_gray"] == pytest.approx(4.0) and table[2][
        "psnr_minus_gray"
    ] == pytest.approx(-1.0)
    assert weakest_source(table, "m")["source"] == "faces"
    assert weakest_source(table, "nope") is None
    (one,) = {r["source"] for r in summarize_by_source(rows, lambda _image: "mine")}
    assert one == "mine"
