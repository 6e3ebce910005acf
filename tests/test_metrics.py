"""Metrics against values worked out independently, and the evaluation and grid over test shards."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity
from torch import nn

from colorize.colorspace import lab_to_rgb, normalize_ab, rgb_to_lab
from colorize.tsv import read_tsv
from colorize.metrics import (
    GRAY,
    PER_IMAGE_COLUMNS,
    PSNR_CAP,
    SUMMARY_COLUMNS,
    ab_error_auc,
    ab_error_curve,
    colorfulness,
    image_metrics,
    psnr,
    ssim,
)
from colorize.models import ModelConfig, build_model
from colorize.evaluate import comparison_grid, evaluate_shards
from colorize.plots import select_indices
from colorize.shards import ShardWriter, read_shard


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


# --- evaluation over shards ----------------------------------------------------------------------


def colourful(seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(30, 225, (5, 5, 3)).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def shards(tmp_path):
    paths = []
    for s in range(2):
        path = tmp_path / f"test-{s:03d}.h5"
        with ShardWriter(path, image_size=32, split="test", compression="none") as w:
            for i in range(3):
                w.append(rgb_to_lab(colourful(10 * s + i)), f"s{s}/img{i}.png", f"{s}{i:063d}")
        paths.append(path)
    return paths


class OracleModel(nn.Module):
    """Returns the true ab of the images it is given, looked up by their L: a perfect colorizer."""

    def __init__(self, shards):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.table = {}
        for path in shards:
            sh = read_shard(path)
            for L, ab in zip(sh.L, sh.ab):
                self.table[L.tobytes()] = normalize_ab(ab.astype(np.float32))  # keyed by the stored float16 L

    def forward(self, x):
        L = (x[:, 0].numpy() * 50 + 50).astype(np.float16)  # denormalised, rounds back to the stored L
        return torch.from_numpy(np.stack([self.table[li.tobytes()] for li in L]))

    def ab_from_output(self, out):
        return out


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="unet", base_channels=4, depth=2)).eval()


def test_evaluate_shards_model_and_gray_baseline(shards, tmp_path):
    per_image, summary_path = tmp_path / "per_image.tsv", tmp_path / "summary.tsv"
    rows, summary = evaluate_shards(tiny_model(), shards, per_image, summary_path, method="unet", batch_size=2)
    assert len(rows) == 12
    table = read_tsv(per_image)
    assert list(table[0]) == list(PER_IMAGE_COLUMNS)
    assert [r["method"] for r in table] == ["unet"] * 6 + [GRAY] * 6

    images = shard_images(shards)
    for r in rows:
        if r["method"] == GRAY:
            L, ab = images[r["image"]]
            true, gray = lab_to_rgb(L, ab), lab_to_rgb(L, np.zeros_like(ab))
            assert r["chroma_pred"] == 0.0 and r["colorfulness_pred"] == 0.0
            assert r["psnr"] == pytest.approx(10 * math.log10(255**2 / np.mean((gray.astype(float) - true) ** 2)))
            assert r["chroma_true"] > 5 and r["colorfulness_true"] > 5

    sm = {r["method"]: r for r in read_tsv(summary_path)}
    assert list(read_tsv(summary_path)[0]) == list(SUMMARY_COLUMNS)
    assert int(sm["unet"]["n_images"]) == int(sm[GRAY]["n_images"]) == 6
    mean = {m: np.mean([r["psnr"] for r in rows if r["method"] == m]) for m in ("unet", GRAY)}
    assert float(sm["unet"]["psnr_minus_gray"]) == pytest.approx(mean["unet"] - mean[GRAY], abs=1e-4)
    assert float(sm[GRAY]["psnr_minus_gray"]) == 0.0
    assert summary[0]["method"] == "unet"


def shard_images(shards) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for path in shards:
        sh = read_shard(path)
        out.update({rel: (L.astype(np.float32), ab.astype(np.float32)) for rel, L, ab in zip(sh.relpath, sh.L, sh.ab)})
    return out


def test_a_perfect_model_scores_perfectly(shards):
    rows, summary = evaluate_shards(OracleModel(shards), shards, method="oracle", batch_size=4)
    best = summary[0]
    assert best["method"] == "oracle" and best["psnr"] == PSNR_CAP and best["ssim"] == pytest.approx(1.0)
    assert best["auc"] == pytest.approx(1.0) and best["psnr_minus_gray"] > 10
    assert best["chroma_pred"] == pytest.approx(best["chroma_true"])


def test_comparison_grid(shards, tmp_path):
    assert select_indices(6, 4) == [0, 2, 3, 5] and select_indices(3, 10) == [0, 1, 2] and select_indices(0, 3) == []
    png = comparison_grid(
        tiny_model(), shards, tmp_path / "grid.png", n_rows=4, other_model=OracleModel(shards), other_label="Oracle"
    )
    with Image.open(png) as im:
        w, h = im.size
    assert w == 4 * 2 * 128 and h > w  # 4 columns of 2-inch tiles at 128 dpi; 4 rows plus the titles
