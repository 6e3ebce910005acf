"""colorize.train: the training loop, checkpoints and resume, early stopping, settings, the Snakemake script."""

from __future__ import annotations

import copy
import logging
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import colorize.train as train_module
from colorize import quantize as q
from colorize.checkpoint import FORMAT_VERSION, load_checkpoint
from colorize.colorspace import AB_SCALE, normalize_ab, rgb_to_lab
from colorize.data import InMemoryDataset
from colorize.device import seed_everything
from colorize.models import ModelConfig, build_model, init_logits_to
from colorize.shards import ShardWriter
from colorize.train import HISTORY_COLUMNS, TrainConfig, loss_for, split_settings, train
from helpers import TINY_UNET, Bag, kept_logging, smooth_image

REPO = Path(__file__).resolve().parents[1]
Q = len(q.gamut_bins())  # the zhang loss's ab bins

torch.set_num_threads(1)


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, lr=3e-3, num_workers=0, log_interval=0, seed=0)
    return TrainConfig(**{**base, **kw})


def adam_steps(model, loss_fn, L, ab, lr: float, steps: int) -> list[float]:
    """``steps`` Adam steps on one batch; the loss before each."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(L), ab)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# --- the training loop ---------------------------------------------------------------------------


def test_a_few_steps_lower_the_loss(shards):
    seed_everything(0)
    ds = InMemoryDataset(shards["train"], train=False)
    L, ab = next(ds.batches(8))
    model = build_model(TINY_UNET)
    losses = adam_steps(model, train_module.loss_for(TINY_UNET), L, ab, lr=3e-3, steps=15)
    assert losses[-1] < 0.8 * losses[0], losses


def test_l1_is_the_mean_absolute_error_and_prefers_the_median_colour():
    out = torch.tensor([[0.1, -0.2], [0.4, 0.0]])[None, :, :, None]
    ab = torch.tensor([[0.3, -0.2], [0.0, 0.5]])[None, :, :, None]
    l1 = loss_for(ModelConfig(loss="l1"))
    assert l1(out, ab).item() == pytest.approx((0.2 + 0.0 + 0.4 + 0.5) / 4)
    # a pixel that is gray in one photo of three and strongly coloured in two: MSE's best
    # constant is the mean (2/3 of the colour), L1's the median (the colour itself)
    targets = torch.tensor([0.0, 0.6, 0.6])[:, None, None, None].expand(3, 2, 1, 1)
    grid = torch.linspace(0, 0.6, 61)

    def best(loss):
        return grid[
            int(torch.argmin(torch.stack([loss(c.expand(3, 2, 1, 1), targets) for c in grid])))
        ]

    assert best(loss_for(ModelConfig(loss="mse"))).item() == pytest.approx(0.4, abs=0.01)
    assert best(l1).item() == pytest.approx(0.6, abs=0.01)


def test_an_l1_model_trains_and_decodes_like_an_mse_one(shards, tmp_path):
    cfg = ModelConfig(**{**TINY_UNET.to_dict(), "loss": "l1"})
    out = tmp_path / "run"
    train(cfg, tiny_cfg(epochs=2), shards["train"], shards["val"], out, progress=False)
    model, best = load_checkpoint(out / "best.pt")
    assert best["model_config"]["loss"] == "l1" and type(model.head).__name__ == "RegressionHead"
    losses = [row["train_loss"] for row in best["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 20, 20)).shape == (1, 2, 20, 20)


def test_train_writes_outputs_and_a_weights_only_checkpoint(shards, tmp_path):
    out = tmp_path / "run"
    summary = train(
        TINY_UNET,
        tiny_cfg(epochs=3, crop_size=24),
        shards["train"],
        shards["val"],
        out,
        progress=False,
    )
    assert (
        summary["epochs_completed"] == 3
        and summary["train_images"] == 11
        and summary["val_images"] == 3
    )
    assert summary["device"] == "cpu" and summary["resumed_from_epoch"] is None

    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["format_version"] == FORMAT_VERSION
    assert ckpt["model_config"] == TINY_UNET.to_dict() and ckpt["train_config"]["crop_size"] == 24
    assert ckpt["epoch"] == 3 and len(ckpt["history"]) == 3 and ckpt["optimizer"]["state"]
    assert ckpt["best_val_psnr"] == max(row["val_psnr"] for row in ckpt["history"])
    losses = [row["train_loss"] for row in ckpt["history"]]
    assert losses[-1] < losses[0]

    model, best = load_checkpoint(out / "best.pt")
    assert not model.training and best["optimizer"] is None
    assert best["history"][-1]["val_psnr"] == ckpt["best_val_psnr"]
    L = torch.randn(1, 1, 20, 20)
    with torch.inference_mode():
        assert model(L).shape == (1, 2, 20, 20)

    rows = (out / "history.tsv").read_text().splitlines()
    assert rows[0].split("\t") == list(HISTORY_COLUMNS) and len(rows) == 4
    assert [int(r.split("\t")[0]) for r in rows[1:]] == [1, 2, 3]
    assert all(float(v) > 0 for r in rows[1:] for v in r.split("\t"))
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.tmp*"))


def test_resume_continues_with_saved_optimizer_state(shards, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    train(TINY_UNET, tiny_cfg(epochs=2), shards["train"], shards["val"], out, progress=False)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)

    seen = {}
    real_epoch = train_module._train_one_epoch

    def spy(model, optimizer, *args, epoch, **kw):
        if not seen:
            seen["epoch"] = epoch
            seen["optimizer"] = copy.deepcopy(optimizer.state_dict())
            seen["model"] = copy.deepcopy(model.state_dict())
        return real_epoch(model, optimizer, *args, epoch=epoch, **kw)

    monkeypatch.setattr(train_module, "_train_one_epoch", spy)
    with caplog.at_level(logging.INFO, logger="colorize.train"):
        summary = train(
            TINY_UNET, tiny_cfg(epochs=4), shards["train"], shards["val"], out, progress=False
        )
    assert "continuing at epoch 3" in caplog.text
    assert summary["resumed_from_epoch"] == 2 and summary["epochs_completed"] == 4
    assert seen["epoch"] == 3
    state, saved_state = seen["optimizer"]["state"], saved["optimizer"]["state"]
    assert state.keys() == saved_state.keys() and len(state) > 0
    for k in state:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[k][name], saved_state[k][name])
    for k, v in saved["model"].items():
        assert torch.equal(seen["model"][k], v)

    history = torch.load(out / "checkpoint.pt", weights_only=True)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[:2] == saved["history"]
    assert len((out / "history.tsv").read_text().splitlines()) == 5

    # The interrupted run ends where an uninterrupted one does.
    monkeypatch.setattr(train_module, "_train_one_epoch", real_epoch)
    straight = tmp_path / "straight"
    train(TINY_UNET, tiny_cfg(epochs=4), shards["train"], shards["val"], straight, progress=False)
    a = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_default(
    shards, tmp_path, caplog
):
    out = tmp_path / "run"
    train(TINY_UNET, tiny_cfg(epochs=1), shards["train"], shards["val"], out, progress=False)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    del ckpt["train_config"]["gpus"]  # as saved before `gpus` existed
    torch.save(ckpt, out / "checkpoint.pt")
    with caplog.at_level(logging.INFO, logger="colorize.train"):
        summary = train(
            TINY_UNET, tiny_cfg(epochs=2), shards["train"], shards["val"], out, progress=False
        )
    assert summary["resumed_from_epoch"] == 1 and "starting over" not in caplog.text


@pytest.mark.parametrize("change", ["model config", "learning rate", "training data"])
def test_a_run_trained_otherwise_starts_over(shards, tmp_path, caplog, change):
    out = tmp_path / "run"
    train(TINY_UNET, tiny_cfg(epochs=1), shards["train"], shards["val"], out, progress=False)
    model_cfg, train_cfg, train_shards = TINY_UNET, tiny_cfg(epochs=2), shards["train"]
    if change == "model config":
        model_cfg = ModelConfig(arch="unet", base_channels=4, depth=1)
    elif change == "learning rate":
        train_cfg = tiny_cfg(epochs=2, lr=1e-4)
    else:
        train_shards = shards["train"][:1]
    with caplog.at_level(logging.WARNING, logger="colorize.train"):
        summary = train(model_cfg, train_cfg, train_shards, shards["val"], out, progress=False)
    assert "starting over" in caplog.text and summary["resumed_from_epoch"] is None
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["model_config"] == model_cfg.to_dict() and [
        row["epoch"] for row in ckpt["history"]
    ] == [1, 2]


KILLABLE = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from colorize.models import ModelConfig
from colorize.train import TrainConfig, train
train(ModelConfig(arch="unet", base_channels=4, depth=2),
      TrainConfig(epochs=100000, batch_size=4, num_workers=0, log_interval=0),
      [Path(p) for p in sys.argv[1:3]], [Path(sys.argv[3])], Path(sys.argv[4]), progress=False)
"""


def test_killed_training_process_resumes_from_its_last_checkpoint(shards, tmp_path, caplog):
    out = tmp_path / "run"
    argv = [
        sys.executable,
        "-c",
        KILLABLE,
        *map(str, shards["train"]),
        str(shards["val"][0]),
        str(out),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.05)
        time.sleep(0.3)  # a few more epochs, so the kill may land mid-epoch or mid-save
    finally:
        proc.kill()  # SIGKILL: no cleanup
        proc.wait()
    assert proc.returncode == -9
    done = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert done >= 1

    with caplog.at_level(logging.INFO, logger="colorize.train"):
        summary = train(
            TINY_UNET,
            tiny_cfg(epochs=done + 2, lr=1e-3),
            shards["train"],
            shards["val"],
            out,
            progress=False,
        )
    assert f"continuing at epoch {done + 1}" in caplog.text
    assert summary["resumed_from_epoch"] == done and summary["epochs_completed"] == done + 2
    history = torch.load(out / "checkpoint.pt", weights_only=True)["history"]
    assert [row["epoch"] for row in history] == list(range(1, done + 3))


@pytest.mark.parametrize("val", ["none", "empty"])
def test_no_validation_images(shards, tmp_path, val):
    out = tmp_path / "run"
    val_shards = [] if val == "none" else [shards["empty"]]
    summary = train(TINY_UNET, tiny_cfg(epochs=2), shards["train"], val_shards, out, progress=False)
    assert (
        summary["val_images"] == 0
        and summary["val_psnr"] is None
        and summary["best_val_psnr"] is None
    )
    rows = [r.split("\t") for r in (out / "history.tsv").read_text().splitlines()[1:]]
    assert [r[2:4] for r in rows] == [["", ""], ["", ""]]
    _, best = load_checkpoint(out / "best.pt")
    assert best["epoch"] == 2  # with nothing to compare, best follows the last epoch
    assert (out / "loss_curve.png").stat().st_size > 0


def test_early_stopping_on_validation_psnr(shards, tmp_path, monkeypatch):
    psnrs = iter([20.0, 21.0, 20.5, 20.9, 25.0, 30.0])

    def fake_evaluate(*args):
        return 0.1, next(psnrs), 3

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
    summary = train(
        TINY_UNET,
        tiny_cfg(epochs=6, patience=2),
        shards["train"],
        shards["val"],
        tmp_path,
        progress=False,
    )
    assert (
        summary["stopped_early"]
        and summary["epochs_completed"] == 4
        and summary["best_val_psnr"] == 21.0
    )
    _, best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 2


def test_a_non_finite_training_loss_is_an_error(shards, tmp_path, monkeypatch):
    monkeypatch.setattr(
        train_module, "loss_for", lambda cfg: lambda out, ab: (out - ab).pow(2).mean() / 0
    )
    with pytest.raises(FloatingPointError, match="epoch 1 step 1"):
        train(TINY_UNET, tiny_cfg(), shards["train"], [], tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


# --- the zhang loss: prior, initial logits, cached prior -------------------------------------------


def colourful_lab(seed: int, size: int = 16) -> np.ndarray:
    """A smooth colourful image in Lab (3x3 random colours, upsampled)."""
    return rgb_to_lab(smooth_image(size, size, seed, cells=3, lo=20, hi=235))


def test_a_few_zhang_training_steps_lower_the_loss():
    torch.manual_seed(0)
    lab = np.stack([colourful_lab(i) for i in range(6)])
    L = torch.from_numpy((lab[..., 0] - 50) / 50).float()[:, None]
    ab = normalize_ab(torch.from_numpy(np.moveaxis(lab[..., 1:], -1, 1)).float())
    cfg = ModelConfig(arch="unet", loss="zhang", base_channels=4, depth=2)
    model = build_model(cfg)
    prior = q.smooth_prior(
        np.bincount(q.quantize(lab[..., 1:]).ravel(), minlength=Q), q.gamut_bins()
    )
    loss_fn = loss_for(cfg, prior)
    losses = adam_steps(model, loss_fn, L, ab, lr=1e-2, steps=20)
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
                w.append(
                    colourful_lab(100 * (split == "val") + i),
                    f"{split}/{i}.png",
                    f"{split}{i:060d}",
                )
        shards[split] = [path]
    model_cfg, train_cfg = split_settings(
        dict(arch="unet", base_channels=4, depth=2, loss="zhang", temperature=0.3, epochs=2, batch_size=2,
             num_workers=0, log_interval=0)
    )  # fmt: skip
    summary = train(
        model_cfg, train_cfg, shards["train"], shards["val"], tmp_path / "run", progress=False
    )
    assert summary["epochs_completed"] == 2 and (tmp_path / "run" / "ab_prior.pt").exists()

    model, ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")  # weights_only=True inside
    assert ckpt["model_config"]["loss"] == "zhang" and model.head.temperature == 0.3
    prior = torch.load(tmp_path / "run" / "ab_prior.pt", weights_only=True)["prior"]
    torch.testing.assert_close(model.head.prior.double(), prior, rtol=1e-6, atol=1e-9)
    assert (
        model.head.prior[q.gamut_bins().tolist().index([0, 0])] < 0.5
    )  # colourful images: not all gray
    with torch.inference_mode():
        ab = model.ab_from_output(model(torch.zeros(1, 1, 16, 16)))
    assert ab.shape == (1, 2, 16, 16) and ab.abs().max() * AB_SCALE <= 130


# --- fine-tuning from a checkpoint (init_from) -----------------------------------------------------


def test_fine_tuning_starts_from_a_checkpoint(effnet_shards, tmp_path):
    train_shards, val_shards = effnet_shards
    cfg = ModelConfig(arch="effnet_unet")
    train(
        cfg,
        TrainConfig(epochs=2, batch_size=4, num_workers=0, log_interval=0, lr=3e-3),
        train_shards,
        val_shards,
        tmp_path / "base",
        progress=False,
    )
    start = tmp_path / "base" / "best.pt"
    tuned_dir = tmp_path / "tuned"
    train(
        cfg,
        TrainConfig(
            epochs=1, batch_size=4, num_workers=0, log_interval=0, lr=1e-12, init_from=str(start)
        ),
        train_shards,
        val_shards,
        tuned_dir,
        progress=False,
    )
    a, _ = load_checkpoint(start)
    b, _ = load_checkpoint(tuned_dir / "best.pt")
    fresh_dir = tmp_path / "fresh"
    train(
        cfg,
        TrainConfig(epochs=1, batch_size=4, num_workers=0, log_interval=0, lr=1e-12),
        train_shards,
        val_shards,
        fresh_dir,
        progress=False,
    )
    c, _ = load_checkpoint(fresh_dir / "best.pt")
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    decoder = [k for k in pa if not k.startswith("encoder.")]
    # a vanishing learning rate: the fine-tuned weights are still the starting checkpoint's ...
    assert all(torch.allclose(pa[k], pb[k], atol=1e-6) for k in decoder)
    # ... and not what a fresh start gives
    assert not all(torch.allclose(pa[k], pc[k], atol=1e-3) for k in decoder)
    # a checkpoint of another architecture is refused, naming what differs
    with pytest.raises(ValueError, match="arch"):
        train(
            ModelConfig(arch="unet", base_channels=4, depth=2),
            TrainConfig(
                epochs=1, batch_size=4, num_workers=0, log_interval=0, init_from=str(start)
            ),
            train_shards,
            val_shards,
            tmp_path / "other",
            progress=False,
        )


# --- settings, Snakemake wrapper -----------------------------------------------------------------


def test_split_settings_assigns_keys_and_names_unknown_ones():
    model_cfg, train_cfg = split_settings(
        {"arch": "unet", "depth": 3, "lr": 0.01, "epochs": 5}, "big"
    )
    assert model_cfg == ModelConfig(arch="unet", depth=3)
    assert (
        train_cfg.lr == 0.01
        and train_cfg.epochs == 5
        and train_cfg.batch_size == TrainConfig().batch_size
    )
    with pytest.raises(ValueError, match=r"model 'big'.*\['learning_rate'\]"):
        split_settings({"arch": "unet", "learning_rate": 0.01}, "big")


def test_train_config_defaults_follow_the_seed():
    cfg = TrainConfig()
    assert cfg.epochs == 200 and cfg.lr == 1e-3 and cfg.weight_decay == 0 and cfg.patience == 0
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_snakemake_script_trains_and_resumes_after_outputs_are_deleted(shards, tmp_path):
    out = tmp_path / "results" / "models" / "tiny"
    outputs = Bag(
        checkpoint=str(out / "checkpoint.pt"),
        history=str(out / "history.tsv"),
        curve=str(out / "loss_curve.png"),
    )
    settings = {
        "arch": "unet",
        "base_channels": 4,
        "depth": 2,
        "epochs": 2,
        "batch_size": 4,
        "num_workers": 0,
    }
    smk = Bag(
        input=Bag(train=[str(p) for p in shards["train"]], val=[str(p) for p in shards["val"]]),
        output=outputs,
        params=Bag(model=settings),
        config={"runtime": {}},  # the script reads the machine knobs (`runtime:`) from the config
        wildcards=Bag(model="tiny"),
        log=[str(tmp_path / "logs" / "train.log")],
        threads=1,
    )
    (tmp_path / "logs").mkdir()
    script = str(REPO / "workflow" / "scripts" / "train.py")
    with kept_logging():
        runpy.run_path(script, init_globals={"snakemake": smk}, run_name="__main__")
        for path in outputs.values():
            assert Path(path).stat().st_size > 0
        assert torch.load(outputs.checkpoint, weights_only=True)["epoch"] == 2
        assert "epoch 2/2" in Path(smk.log[0]).read_text()

        # Snakemake deletes a job's declared outputs before rerunning it: resume from the state directory.
        for path in outputs.values():
            os.remove(path)
        settings["epochs"] = 3
        runpy.run_path(script, init_globals={"snakemake": smk}, run_name="__main__")
        assert "continuing at epoch 3" in Path(smk.log[0]).read_text()
        assert [
            r["epoch"] for r in torch.load(outputs.checkpoint, weights_only=True)["history"]
        ] == [1, 2, 3]

        settings["bogus"] = 1
        with pytest.raises(ValueError, match="'tiny'.*'bogus'") as err:
            runpy.run_path(script, init_globals={"snakemake": smk}, run_name="__main__")
        sys.excepthook(
            err.type, err.value, err.tb
        )  # what the interpreter does with an uncaught error
        assert "'bogus'" in Path(smk.log[0]).read_text()  # the job's log names the bad key
