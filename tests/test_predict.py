"""colorize.predict: arrays and shards in; ab predicted at the working size, recombined at full size, lightness kept."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from colorize.colorspace import normalize_ab, rgb_to_lab
from colorize.predict import colorize_arrays, predict_l_batch, predict_shard
from colorize.shards import ShardWriter
from helpers import assert_same_lightness, smooth_image, tinted_model

SIZE = 64  # working size: small, so the tests stay fast on two cores

torch.set_num_threads(1)


class RampModel(nn.Module):
    """Predicts a = ramp along the width, b = ramp along the height (checks orientation and resizing)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        b, _, h, w = x.shape
        a = torch.linspace(-20, 20, w).view(1, 1, 1, w).expand(b, 1, h, w)
        bb = torch.linspace(-20, 20, h).view(1, 1, h, 1).expand(b, 1, h, w)
        return normalize_ab(torch.cat([a, bb], dim=1)) + 0 * self.dummy

    def ab_from_output(self, out):
        return out


def test_odd_sizes_gray_and_rgba_keep_size_and_lightness():
    rgba = np.dstack([smooth_image(41, 29, 3), np.full((41, 29), 200, np.uint8)])
    inputs = [
        smooth_image(211, 317, 1),
        smooth_image(317, 211, 2),
        lightness_gray := smooth_image(50, 61, 4)[..., 1],
        lightness_gray[..., None],
        rgba,
    ]
    outputs = colorize_arrays(tinted_model(), inputs, size=SIZE, batch_size=2)
    assert len(outputs) == len(inputs)
    for inp, out in zip(inputs, outputs):
        assert out.shape == (*inp.shape[:2], 3) and out.dtype == np.uint8
        assert_same_lightness(inp, out)
        chroma = np.hypot(*np.moveaxis(rgb_to_lab(out)[..., 1:], -1, 0)).mean()
        assert chroma > 5, "the model's colour did not reach the output"


def test_colour_is_resized_back_the_right_way_round():
    """a grows left to right and b top to bottom at full size, for landscape and portrait inputs."""
    for h, w in [(211, 317), (317, 211)]:
        gray = np.full((h, w), 128, np.uint8)
        (out,) = colorize_arrays(RampModel(), [gray], size=SIZE)
        ab = rgb_to_lab(out)[..., 1:]
        a_by_col, b_by_row = ab[..., 0].mean(axis=0), ab[..., 1].mean(axis=1)
        assert np.corrcoef(a_by_col, np.arange(w))[0, 1] > 0.99
        assert np.corrcoef(b_by_row, np.arange(h))[0, 1] > 0.99
        assert (
            abs(a_by_col[0] + 20) < 2 and abs(a_by_col[-1] - 20) < 2
        )  # the ramp's ends survive the resize


def test_batched_equals_one_at_a_time():
    model = tinted_model()
    inputs = [smooth_image(70 + 9 * i, 90 - 7 * i, i) for i in range(5)]
    batched = colorize_arrays(model, inputs, size=SIZE, batch_size=4)
    single = [colorize_arrays(model, [x], size=SIZE, batch_size=1)[0] for x in inputs]
    for a, b in zip(batched, single):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.fixture
def test_shard(tmp_path) -> Path:
    path = tmp_path / "test-000.h5"
    with ShardWriter(path, image_size=32, split="test", compression="none") as w:
        for i in range(5):
            w.append(rgb_to_lab(smooth_image(32, 32, 10 + i)), f"img{i}.jpg", f"{i:064d}")
    return path


def test_predict_shard_matches_direct_prediction(test_shard):
    model = tinted_model()
    ab = predict_shard(model, test_shard, batch_size=2)
    with h5py.File(test_shard) as f:
        L = f["L"][...].astype(np.float32)
    assert ab.shape == (5, 2, 32, 32) and ab.dtype == np.float32
    np.testing.assert_allclose(ab, predict_l_batch(model, L), atol=1e-4)
    resized = predict_shard(
        model, test_shard, size=16
    )  # through a working size: back at the shard's size
    assert resized.shape == (5, 2, 32, 32)
