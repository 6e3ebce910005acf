"""colorize.quantize: ab bins, soft-encoding, prior and rebalancing, annealed mean, the rebalanced loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorize import quantize as q
from colorize.colorspace import normalize_ab, rgb_to_lab
from colorize.models import ModelConfig
from colorize.shards import ShardWriter
from colorize.train import loss_for
from helpers import soft_encode_dense

torch.set_num_threads(1)
CENTRES = torch.from_numpy(q.gamut_bins().copy())
Q = len(CENTRES)


def random_srgb_ab(n: int, seed: int = 0) -> np.ndarray:
    rgb = np.random.default_rng(seed).random((n, 1, 3)).astype(np.float32)
    return rgb_to_lab(rgb)[:, 0, 1:]


# --- bins ------------------------------------------------------------------------------------


def test_gamut_bins_are_the_grid_cells_srgb_colours_fall_in():
    bins = q.gamut_bins()
    assert bins.shape == (262, 2) and bins.dtype == np.float32
    assert np.all(bins % q.BIN_SIZE == 0) and len(np.unique(bins, axis=0)) == len(bins)
    assert [0, 0] in bins.tolist()  # gray
    # every colour of the 8-bit cube (a sample of it) quantises to its exact nearest grid centre
    ab = random_srgb_ab(50_000)
    nearest_grid = np.rint(ab / q.BIN_SIZE) * q.BIN_SIZE
    np.testing.assert_array_equal(bins[q.quantize(ab)], nearest_grid)
    # ... and bins where no colour falls are not kept: a saturated green-blue corner is out
    assert [-110, -110] not in bins.tolist() and [100, -110] not in bins.tolist()


def test_quantisation_round_trip_of_bin_centres():
    assert q.quantize(q.gamut_bins()).tolist() == list(range(Q))
    # near a centre (within half a bin) -> that bin
    jitter = np.random.default_rng(1).uniform(-4.9, 4.9, (Q, 2)).astype(np.float32)
    assert q.quantize(q.gamut_bins() + jitter).tolist() == list(range(Q))
    # soft-encoding then annealed mean at T -> 0 of the encoding's log: the centre itself
    ab = CENTRES.T.reshape(1, 2, 1, Q)
    dense = soft_encode_dense(ab, CENTRES)
    decoded = q.annealed_mean(torch.log(dense + 1e-12), CENTRES, temperature=0)
    assert torch.equal(decoded, ab)


# --- soft-encoding ---------------------------------------------------------------------------


def test_soft_encoding_has_5_neighbours_summing_to_1():
    ab = torch.from_numpy(random_srgb_ab(600)).T.reshape(1, 2, 20, 30)
    dense = soft_encode_dense(ab, CENTRES)
    assert dense.shape == (1, Q, 20, 30)
    torch.testing.assert_close(dense.sum(1), torch.ones(1, 20, 30))
    assert torch.all((dense > 0).sum(1) == 5)
    idx, w = q.soft_encode(ab, CENTRES)
    assert torch.all(w[:, 0] >= w[:, 1]) and torch.all(w[:, 3] >= w[:, 4])  # nearest first
    # the weights are a Gaussian (sigma 5) of the distances
    d2 = ((ab[:, :, None] - CENTRES.T[None, :, :, None, None].expand(1, 2, Q, 20, 30).gather(
        2, idx[:, None].expand(1, 2, 5, 20, 30))) ** 2).sum(1)  # fmt: skip
    expected = torch.softmax(-d2 / (2 * q.SOFT_SIGMA**2), dim=1)
    torch.testing.assert_close(w, expected)
    # a pixel exactly on a centre: its own bin first, its 4 grid neighbours equally next
    idx, w = q.soft_encode(torch.zeros(1, 2, 1, 1), CENTRES)
    assert CENTRES[idx[0, 0, 0, 0]].tolist() == [0, 0]
    torch.testing.assert_close(w[0, 1:, 0, 0], torch.full((4,), float(w[0, 1, 0, 0])))
    assert float(w[0, 0, 0, 0]) == pytest.approx(1 / (1 + 4 * np.exp(-100 / 50)), rel=1e-5)


def test_fast_neighbour_search_equals_brute_force_up_to_ties():
    ab = torch.from_numpy(random_srgb_ab(20_000, seed=3)).T.reshape(1, 2, 100, 200)
    idx, _ = q.soft_encode(ab, CENTRES)
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2_all = torch.cdist(pixels.double(), CENTRES.double()).square()
    d2_ref, _ = torch.topk(d2_all, 5, dim=1, largest=False)
    d2_fast = d2_all.gather(1, idx.permute(0, 2, 3, 1).reshape(-1, 5))
    torch.testing.assert_close(d2_fast, d2_ref, rtol=0, atol=1e-3)


# --- prior and rebalancing ---------------------------------------------------------------------


def test_rebalancing_weights_have_prior_mean_1_and_the_documented_limits():
    rng = np.random.default_rng(0)
    prior = rng.random(Q) ** 4 + 0.01
    prior /= prior.sum()
    w = q.rebalance_weights(prior, 0.5)
    assert (prior * w).sum() == pytest.approx(1.0)
    assert np.all(np.diff(w[np.argsort(prior)]) <= 1e-12)  # rarer colours weigh more
    np.testing.assert_allclose(
        q.rebalance_weights(prior, 1.0), np.ones(Q)
    )  # lambda 1: no rebalancing
    np.testing.assert_allclose(
        q.rebalance_weights(prior, 1e-9), 1 / (Q * prior), rtol=1e-5
    )  # lambda -> 0
    np.testing.assert_allclose(
        q.rebalance_weights(np.full(Q, 1 / Q), 0.5), np.ones(Q)
    )  # uniform prior
    with pytest.raises(ValueError, match="lambda"):
        q.rebalance_weights(prior, 0.0)


def test_prior_from_shards_counts_pixels_and_is_cached(tmp_path):
    path = tmp_path / "train-000.h5"
    lab = np.zeros((8, 8, 3), np.float32)
    lab[..., 0] = 50
    lab[:, :4, 1:] = (20, 30)  # half the pixels in bin (20, 30), half gray
    with ShardWriter(path, 8, "train") as w:
        w.append(lab, "a.png", "0" * 64)
        w.append(lab, "b.png", "1" * 64)
    counts = q.ab_counts([path])
    bins = q.gamut_bins().tolist()
    assert (
        counts.sum() == 128
        and counts[bins.index([20, 30])] == 64
        and counts[bins.index([0, 0])] == 64
    )
    prior = q.smooth_prior(counts, q.gamut_bins())
    assert prior.sum() == pytest.approx(1) and prior[bins.index([0, 0])] == prior.max()
    assert prior[bins.index([10, 30])] > 0  # smoothed onto neighbours (sigma 5: exp(-1) share)
    np.testing.assert_allclose(q.smooth_prior(counts, q.gamut_bins(), sigma=0), counts / 128)

    cache = tmp_path / "ab_prior.pt"
    p1 = q.ab_prior([path], cache, fingerprint="abc")
    cached = torch.load(cache, weights_only=True)
    assert cached["fingerprint"] == "abc" and torch.equal(
        cached["counts"], torch.from_numpy(counts)
    )
    cached["prior"] = torch.full(
        (Q,), 1.0 / Q, dtype=torch.float64
    )  # tamper: a reuse would return this
    torch.save(cached, cache)
    np.testing.assert_allclose(q.ab_prior([path], cache, fingerprint="abc"), 1.0 / Q)
    np.testing.assert_allclose(
        q.ab_prior([path], cache, fingerprint="other"), p1
    )  # other shards: recomputed


# --- annealed mean -----------------------------------------------------------------------------


def test_annealed_mean_is_the_mode_at_t_to_0_and_the_mean_at_t_1():
    torch.manual_seed(0)
    logits = torch.randn(2, Q, 3, 4) * 3
    probs = torch.softmax(logits, 1)
    mean = torch.einsum("bqhw,qc->bchw", probs, CENTRES)
    mode = CENTRES[logits.argmax(1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(q.annealed_mean(logits, CENTRES, 1.0), mean)
    torch.testing.assert_close(q.annealed_mean(logits, CENTRES, 1e-4), mode)
    assert torch.equal(q.annealed_mean(logits, CENTRES, 0), mode)
    # lower temperature, more vivid: chroma grows as T falls (for a spread-out distribution)
    chroma = [q.annealed_mean(logits, CENTRES, t).norm(dim=1).mean() for t in (1.0, 0.38, 0.1)]
    assert chroma[0] < chroma[1] < chroma[2]


# --- the loss ----------------------------------------------------------------------------------


def test_zhang_loss_on_the_true_distribution_is_its_entropy_and_weights_scale_it():
    ab = torch.from_numpy(random_srgb_ab(64)).T.reshape(1, 2, 8, 8)
    target = soft_encode_dense(ab, CENTRES)
    logits = torch.log(target + 1e-30)
    entropy = -(target * torch.log(target.clamp_min(1e-30))).sum(1).mean()
    torch.testing.assert_close(
        q.rebalanced_cross_entropy(logits, ab, CENTRES), entropy, rtol=1e-4, atol=1e-5
    )
    twice = q.rebalanced_cross_entropy(logits, ab, CENTRES, torch.full((Q,), 2.0))
    torch.testing.assert_close(twice, 2 * entropy, rtol=1e-4, atol=1e-5)
    loss = loss_for(ModelConfig(loss="zhang"))  # takes normalised ab, as the training loop gives it
    torch.testing.assert_close(loss(logits, normalize_ab(ab)), entropy, rtol=1e-4, atol=1e-5)
