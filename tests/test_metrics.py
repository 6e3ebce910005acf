"""colorize.metrics: each metric against values worked out independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from colorize.colorspace import lab_to_rgb
from helpers import ab_error_curve
from colorize.metrics import PSNR_CAP, ab_error_auc, colorfulness, image_metrics, psnr, ssim


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
    gray = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)  # every gray level
    m = image_metrics(gray, gray)
    assert m["chroma_pred"] == 0.0 and m["colorfulness_pred"] == 0.0 and m["auc"] == 1.0
    colour = lab_to_rgb(np.full((8, 8), 60.0), np.broadcast_to(np.array([30.0, 40.0]), (8, 8, 2)))
    assert image_metrics(colour, gray[:8, :8])["chroma_pred"] == pytest.approx(50.0, abs=1.0)  # hypot(30, 40)


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
