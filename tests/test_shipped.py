"""colorize.shipped: the committed model loads weights only with its card; release keeps a model within fp16."""

from __future__ import annotations

from pathlib import Path

import torch

import colorize
from colorize.checkpoint import load_checkpoint
from colorize.models import ModelConfig
from colorize.train import TrainConfig, train

torch.set_num_threads(1)


def test_the_shipped_model_loads_weights_only_with_its_card():
    from colorize.shipped import SHIPPED

    ckpt = torch.load(SHIPPED, weights_only=True)
    assert ckpt["model_config"]["arch"] == "effnet_unet"
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    card = ckpt["card"]
    for key in (
        "architecture",
        "encoder",
        "encoder_weights",
        "trained_epochs",
        "commit",
        "train_config",
    ):
        assert card.get(key) is not None, key
    assert SHIPPED.stat().st_size < 25e6
    model, _ = load_checkpoint(SHIPPED)
    assert next(model.parameters()).dtype == torch.float32


def test_release_keeps_the_model_within_fp16(effnet_shards, tmp_path):
    from colorize.shipped import release

    train_shards, val_shards = effnet_shards
    train(
        ModelConfig(arch="effnet_unet"),
        TrainConfig(epochs=1, batch_size=4, num_workers=0, log_interval=0),
        train_shards,
        val_shards,
        tmp_path / "run",
        progress=False,
    )
    out = release(
        tmp_path / "run" / "best.pt", tmp_path / "shipped.pt", {"data": "tiny test shards"}
    )
    assert out.stat().st_size < (tmp_path / "run" / "best.pt").stat().st_size
    a, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    b, ckpt = load_checkpoint(out)
    assert ckpt["card"]["data"] == "tiny test shards" and "optimizer" not in ckpt
    assert ckpt["card"]["colorize_version"] == colorize.__version__  # the version that trained it
    x = torch.rand(2, 1, 64, 48) * 2 - 1
    with torch.no_grad():
        assert (
            a.ab_from_output(a(x)) - b.ab_from_output(b(x))
        ).abs().max() < 0.01  # ab/128: ~1 Lab unit


def test_version_names_the_package_and_the_shipped_model():
    """`colorize --version`: the package version, the shipped model's name and the digest of
    its weights (computed here from the checkpoint in PyTorch, not read from the twin), and the
    colorize that trained it, as `colorize info` shows it."""
    import subprocess
    import sys

    from colorize.runtime import weights_digest
    from colorize.shipped import SHIPPED

    out = subprocess.run([str(Path(sys.executable).with_name("colorize")), "--version"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    model, ckpt = load_checkpoint(SHIPPED)
    assert out.splitlines() == [
        f"colorize {colorize.__version__}",
        f"shipped model: {ckpt['card']['name']} (weights sha256 {weights_digest(model)}; "
        f"trained with colorize {ckpt['card']['library_version']})",
    ]
    card_md = (SHIPPED.parent / "MODEL_CARD.md").read_text()
    assert f"Trained with colorize {ckpt['card']['library_version']}" in card_md
