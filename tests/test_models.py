"""colorize.models: every network's output at any size, the zhang head, effnet_unet's frozen or fine-tuned encoder."""

from __future__ import annotations

import pytest
import torch

from colorize import quantize as q
from colorize.models import ModelConfig, build_model, count_parameters, param_groups
from helpers import TINY_UNET

torch.set_num_threads(1)
CENTRES = torch.from_numpy(q.gamut_bins().copy())
Q = len(CENTRES)


def test_seed_ae_has_the_seed_parameter_count():
    assert count_parameters(build_model(ModelConfig(arch="seed_ae"))) == 6_219_410


@pytest.mark.parametrize("cfg", [ModelConfig(arch="seed_ae"), TINY_UNET], ids=["seed_ae", "unet"])
@pytest.mark.parametrize("hw", [(32, 32), (24, 40), (33, 47)])
def test_forward_returns_ab_at_input_size(cfg, hw):
    model = build_model(cfg).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 1, *hw))
        ab = model.ab_from_output(out)
    assert out.shape == ab.shape == (2, 2, *hw)
    assert ab.abs().max() <= 1


# --- the zhang head ------------------------------------------------------------------------------


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
    assert zhang == 6_219_410 + (16 * 9 + 1) * (
        Q - 2
    )  # the last convolution gives Q channels instead of 2


# --- effnet_unet: the pretrained encoder under a U-Net decoder ---------------------------------


@pytest.mark.parametrize("loss, channels", [("mse", 2), ("zhang", 262)])
@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (7, 9), (100, 31)])
def test_output_at_odd_sizes(loss, channels, hw):
    model = build_model(ModelConfig(arch="effnet_unet", loss=loss)).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, *hw))
        ab = model.ab_from_output(out)
    assert out.shape == (2, channels, *hw) and ab.shape == (2, 2, *hw)
    assert ab.abs().max() <= 1.0


def _one_step(model):
    opt = torch.optim.Adam(param_groups(model, 1e-2), lr=1e-2)
    model.train()
    out = model(torch.rand(2, 1, 32, 32) * 2 - 1)
    out.float().pow(2).mean().backward()
    opt.step()
    return opt


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_a_frozen_encoder_keeps_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="effnet_unet", freeze_encoder=True))
    enc0, dec0 = _snapshot(model.encoder), model.out.weight.clone()
    opt = _one_step(model)
    assert [g["name"] for g in opt.param_groups] == ["decoder"]
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert all(
        torch.equal(v, enc0[k]) for k, v in model.encoder.state_dict().items()
    )  # running stats too
    assert not torch.equal(model.out.weight, dec0)


def test_a_fine_tuned_encoder_learns_slower_with_batchnorm_statistics_frozen():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="effnet_unet", freeze_encoder=False, encoder_lr_scale=0.1))
    enc0 = _snapshot(model.encoder)
    opt = _one_step(model)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"decoder": 1e-2, "encoder": pytest.approx(1e-3)}
    state = model.encoder.state_dict()
    stem = "net._conv_stem.weight"
    assert not torch.equal(state[stem], enc0[stem])  # weights move
    stats = [k for k in state if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(state[k], enc0[k]) for k in stats)  # statistics do not
