"""ab bins, soft-encoding, rebalancing, annealed mean, the zhang head and loss (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorize import quantize as q
from colorize.colorspace import AB_SCALE, normalize_ab, rgb_to_lab
from colorize.checkpoint import load_checkpoint
from colorize.models import ModelConfig, build_model, count_parameters, init_logits_to
from colorize.shards import ShardWriter
from colorize.train import loss_for, split_settings, train

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
    dense = q.soft_encode_dense(ab, CENTRES)
    decoded = q.annealed_mean(torch.log(dense + 1e-12), CENTRES, temperature=0)
    assert torch.equal(decoded, ab)


# --- soft-encoding ---------------------------------------------------------------------------


def test_soft_encoding_has_5_neighbours_summing_to_1():
    ab = torch.from_numpy(random_srgb_ab(600)).T.reshape(1, 2, 20, 30)
    dense = q.soft_encode_dense(ab, CENTRES)
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
    np.testing.assert_allclose(q.rebalance_weights(prior, 1.0), np.ones(Q))  # lambda 1: no rebalancing
    np.testing.assert_allclose(q.rebalance_weights(prior, 1e-9), 1 / (Q * prior), rtol=1e-5)  # lambda -> 0
    np.testing.assert_allclose(q.rebalance_weights(np.full(Q, 1 / Q), 0.5), np.ones(Q))  # uniform prior
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
    assert counts.sum() == 128 and counts[bins.index([20, 30])] == 64 and counts[bins.index([0, 0])] == 64
    prior = q.smooth_prior(counts, q.gamut_bins())
    assert prior.sum() == pytest.approx(1) and prior[bins.index([0, 0])] == prior.max()
    assert prior[bins.index([10, 30])] > 0  # smoothed onto neighbours (sigma 5: exp(-1) share)
    np.testing.assert_allclose(q.smooth_prior(counts, q.gamut_bins(), sigma=0), counts / 128)

    cache = tmp_path / "ab_prior.pt"
    p1 = q.ab_prior([path], cache, fingerprint="abc")
    cached = torch.load(cache, weights_only=True)
    assert cached["fingerprint"] == "abc" and torch.equal(cached["counts"], torch.from_numpy(counts))
    cached["prior"] = torch.full((Q,), 1.0 / Q, dtype=torch.float64)  # tamper: a reuse would return this
    torch.save(cached, cache)
    np.testing.assert_allclose(q.ab_prior([path], cache, fingerprint="abc"), 1.0 / Q)
    np.testing.assert_allclose(q.ab_prior([path], cache, fingerprint="other"), p1)  # other shards: recomputed


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


# --- head, loss, training ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["seed_ae", "unet"])
@pytest.mark.parametrize("hw", [(32, 32), (33, 47)])
def test_zhang_head_shapes(arch, hw):
    model = build_model(ModelConfig(arch=arch, loss="zhang", base_channels=4, depth=2)).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 1, *hw))
        ab = model.ab_from_output(out)
    assert out.shape == (2, Q, *hw) and ab.shape == (2, 2, *hw)
    assert ab.abs().max() <= 1
    state = model.state_dict()  # the bins and the prior travel in the checkpoint, once each
    head = "decoder.11" if arch == "seed_ae" else "head"
    assert [k for k in state if k.endswith("bin_centers")] == [f"{head}.bin_centers"]
    assert torch.equal(state[f"{head}.bin_centers"], CENTRES)
    assert len([k for k in state if k.endswith(".prior")]) == 1


def test_seed_ae_keeps_the_seed_parameter_count_with_the_default_head():
    assert count_parameters(build_model(ModelConfig(arch="seed_ae"))) == 6_219_410
    zhang = count_parameters(build_model(ModelConfig(arch="seed_ae", loss="zhang")))
    assert zhang == 6_219_410 + (16 * 9 + 1) * (Q - 2)  # the last convolution gives Q channels instead of 2


def test_zhang_loss_on_the_true_distribution_is_its_entropy_and_weights_scale_it():
    ab = torch.from_numpy(random_srgb_ab(64)).T.reshape(1, 2, 8, 8)
    target = q.soft_encode_dense(ab, CENTRES)
    logits = torch.log(target + 1e-30)
    entropy = -(target * torch.log(target.clamp_min(1e-30))).sum(1).mean()
    torch.testing.assert_close(q.rebalanced_cross_entropy(logits, ab, CENTRES), entropy, rtol=1e-4, atol=1e-5)
    twice = q.rebalanced_cross_entropy(logits, ab, CENTRES, torch.full((Q,), 2.0))
    torch.testing.assert_close(twice, 2 * entropy, rtol=1e-4, atol=1e-5)
    loss = loss_for(ModelConfig(loss="zhang"))  # takes normalised ab, as the training loop gives it
    torch.testing.assert_close(loss(logits, normalize_ab(ab)), entropy, rtol=1e-4, atol=1e-5)


def colourful_lab(seed: int, size: int = 16) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    rgb = cv2.resize(rng.integers(20, 235, (3, 3, 3)).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    return rgb_to_lab(rgb)


def test_a_few_zhang_training_steps_lower_the_loss():
    torch.manual_seed(0)
    lab = np.stack([colourful_lab(i) for i in range(6)])
    L = torch.from_numpy((lab[..., 0] - 50) / 50).float()[:, None]
    ab = normalize_ab(torch.from_numpy(np.moveaxis(lab[..., 1:], -1, 1)).float())
    cfg = ModelConfig(arch="unet", loss="zhang", base_channels=4, depth=2)
    model = build_model(cfg)
    prior = q.smooth_prior(np.bincount(q.quantize(lab[..., 1:]).ravel(), minlength=Q), q.gamut_bins())
    loss_fn = loss_for(cfg, prior)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = loss_fn(model(L), ab)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0], losses

    # starting from the rebalanced prior (as training does) begins lower than from uniform
    fresh = build_model(cfg)
    init_logits_to(fresh, prior * q.rebalance_weights(prior, cfg.rebalance_lambda))
    with torch.no_grad():
        assert loss_fn(fresh(L), ab).item() < losses[0] - 0.2


def test_zhang_training_caches_the_prior_and_the_checkpoint_loads_safely(tmp_path):
    shards = {}
    for split, n in (("train", 4), ("val", 2)):
        path = tmp_path / f"{split}-000.h5"
        with ShardWriter(path, 16, split) as w:
            for i in range(n):
                w.append(colourful_lab(100 * (split == "val") + i), f"{split}/{i}.png", f"{split}{i:060d}")
        shards[split] = [path]
    model_cfg, train_cfg = split_settings(
        dict(arch="unet", base_channels=4, depth=2, loss="zhang", temperature=0.3, epochs=2, batch_size=2,
             num_workers=0, log_interval=0)
    )  # fmt: skip
    summary = train(model_cfg, train_cfg, shards["train"], shards["val"], tmp_path / "run", progress=False)
    assert summary["epochs_completed"] == 2 and (tmp_path / "run" / "ab_prior.pt").exists()

    model, ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")  # weights_only=True inside
    assert ckpt["model_config"]["loss"] == "zhang" and model.head.temperature == 0.3
    prior = torch.load(tmp_path / "run" / "ab_prior.pt", weights_only=True)["prior"]
    torch.testing.assert_close(model.head.prior.double(), prior, rtol=1e-6, atol=1e-9)
    assert model.head.prior[q.gamut_bins().tolist().index([0, 0])] < 0.5  # colourful images: not all gray
    with torch.inference_mode():
        ab = model.ab_from_output(model(torch.zeros(1, 1, 16, 16)))
    assert ab.shape == (1, 2, 16, 16) and ab.abs().max() * AB_SCALE <= 130
