"""Models, the shard data pipeline, training, checkpoints and resume (tiny images and models)."""

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
from torch.utils.data import DataLoader

from colorize.colorspace import denormalize_ab, denormalize_l, normalize_ab, normalize_l, rgb_to_lab
from colorize.data import InMemoryDataset, ShardDataset, batches_per_epoch, iterate_batches
from colorize.device import autocast, pick_device, seed_everything
from colorize.checkpoint import FORMAT_VERSION, load_checkpoint
from colorize.models import ModelConfig, build_model, count_parameters
from colorize.shards import ShardWriter, read_shard
import colorize.train as train_module
from colorize.train import HISTORY_COLUMNS, TrainConfig, split_settings, train

REPO = Path(__file__).resolve().parents[1]
TINY_UNET = ModelConfig(arch="unet", base_channels=4, depth=2)
SIZE = 32

torch.set_num_threads(1)


# --- synthetic shards ------------------------------------------------------------------------


def smooth_rgb(size: int, seed: int) -> np.ndarray:
    """A smooth, colourful float32 RGB image in [0, 1], unique per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    freq, phase = rng.uniform(0.5, 1.5, 3), rng.uniform(0, 2 * np.pi, 3)
    chans = [0.5 + 0.35 * np.sin(2 * np.pi * freq[c] * (x * (c + 1) + y) + phase[c]) for c in range(3)]
    return np.stack(chans, -1).astype(np.float32)


def write_shard(path: Path, n: int, size: int = SIZE, seed: int = 0) -> Path:
    with ShardWriter(path, size, split=path.stem.split("-")[0]) as w:
        for i in range(n):
            w.append(rgb_to_lab(smooth_rgb(size, seed * 1000 + i)), f"{path.stem}/{i}.png", f"{seed}-{i}")
    return path


def write_coded_shard(path: Path, ids: list[int], size: int = SIZE) -> Path:
    """Images whose pixels say where they come from: L = 3x, a = 3y, b = 10 * image id.

    Exact in float16, so a crop's offset, flip and source image can be read back from it.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    with ShardWriter(path, size, split="train") as w:
        for i in ids:
            lab = np.stack([3 * x, 3 * y, np.full_like(x, 10 * i)], -1)
            w.append(lab, f"img{i}.png", str(i))
    return path


def decode(L_norm: torch.Tensor, ab_norm: torch.Tensor) -> tuple[int, int, int, bool]:
    """(image id, top, left, flipped) of a sample cut from a coded image."""
    L = np.rint(denormalize_l(L_norm[0].numpy().astype(np.float64))).astype(int)
    ab = np.rint(denormalize_ab(ab_norm.numpy().astype(np.float64))).astype(int)
    flipped = L[0, 0] > L[0, -1]
    left = (L[0, -1] if flipped else L[0, 0]) // 3
    c = L.shape[-1]
    expected_row = 3 * (left + np.arange(c))
    assert (L == (expected_row[::-1] if flipped else expected_row)[None, :]).all()
    assert (ab[0] == ab[0][:, :1]).all() and (ab[1] == ab[1][0, 0]).all()
    return int(ab[1][0, 0]) // 10, int(ab[0][0, 0]) // 3, int(left), bool(flipped)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    return {
        "train": [write_shard(d / "train-000.h5", 6, seed=1), write_shard(d / "train-001.h5", 5, seed=2)],
        "val": [write_shard(d / "val-000.h5", 3, seed=3)],
        "empty": write_shard(d / "val-001.h5", 0),
    }


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, lr=3e-3, num_workers=0, log_interval=0, seed=0)
    return TrainConfig(**{**base, **kw})


# --- models ----------------------------------------------------------------------------------


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


# --- data ------------------------------------------------------------------------------------


def test_validation_samples_are_the_stored_images_normalised(shards):
    ds = ShardDataset(shards["val"], train=False)
    stored = read_shard(shards["val"][0])
    samples = list(ds)
    assert len(samples) == len(ds) == 3
    for (L_norm, ab_norm), L, ab in zip(samples, stored.L, stored.ab):
        assert L_norm.dtype == ab_norm.dtype == torch.float32
        assert L_norm.shape == (1, SIZE, SIZE) and ab_norm.shape == (2, SIZE, SIZE)
        np.testing.assert_allclose(L_norm[0].numpy(), normalize_l(L.astype(np.float32)), rtol=0, atol=1e-6)
        np.testing.assert_allclose(ab_norm.numpy(), normalize_ab(ab.astype(np.float32)), rtol=0, atol=1e-6)
        assert -1 <= L_norm.min() and L_norm.max() <= 1 and ab_norm.abs().max() <= 1


def test_training_order_is_shuffled_per_epoch_and_seeded(tmp_path):
    paths = [write_coded_shard(tmp_path / f"train-{k}.h5", list(range(5 * k, 5 * k + 5))) for k in range(3)]
    ds = ShardDataset(paths, train=True, flip=False, seed=7)

    def ids(epoch, seed=7):
        ds.seed = seed
        ds.set_epoch(epoch)
        return [decode(*s)[0] for s in ds]

    assert sorted(ids(0)) == list(range(15))  # every image once per epoch
    assert ids(0) == ids(0)  # seeded
    assert ids(0) != ids(1) and ids(1) != ids(2)  # a new order each epoch
    assert ids(0, seed=8) != ids(0, seed=7)


def test_random_crop_and_flip_training_centre_crop_validation(tmp_path):
    path = write_coded_shard(tmp_path / "train-0.h5", list(range(8)))
    crop = 12
    ds = ShardDataset([path], crop_size=crop, train=True, seed=0)
    seen = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        for L_norm, ab_norm in ds:
            assert L_norm.shape == (1, crop, crop) and ab_norm.shape == (2, crop, crop)
            image, top, left, flipped = decode(L_norm, ab_norm)
            assert 0 <= image < 8 and 0 <= top <= SIZE - crop and 0 <= left <= SIZE - crop
            seen.append((top, left, flipped))
    flips = [f for _, _, f in seen]
    assert 0.25 < np.mean(flips) < 0.75
    assert len({(t, l) for t, l, _ in seen}) > 20  # offsets vary

    val = ShardDataset([path], crop_size=crop, train=False)
    centre = (SIZE - crop) // 2
    assert [decode(*s) for s in val] == [(i, centre, centre, False) for i in range(8)]
    with pytest.raises(ValueError, match="crop_size"):
        ShardDataset([path], crop_size=SIZE + 1)


def test_workers_read_disjoint_shards_and_empty_shards_are_skipped(tmp_path):
    paths = [write_coded_shard(tmp_path / f"train-{k}.h5", list(range(4 * k, 4 * k + 4))) for k in range(3)]
    paths.insert(1, write_coded_shard(tmp_path / "train-empty.h5", []))
    ds = ShardDataset(paths, crop_size=16, seed=3)
    ds.set_epoch(5)
    single = sorted(decode(*s) for s in ds)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    multi = sorted(decode(*s) for s in loader)
    assert len(single) == 12 and [s[0] for s in single] == list(range(12))
    assert multi == single  # same samples (seeded by shard), each image once
    batches = list(iterate_batches(ds, 5, num_workers=2))
    assert sum(len(L) for L, _ in batches) == 12 and len(batches) == batches_per_epoch(ds, 5, num_workers=2)

    only_empty = ShardDataset([paths[1]])
    assert len(only_empty) == 0 and list(only_empty) == [] and only_empty.sample_size is None


def test_in_memory_dataset_matches_streaming(tmp_path):
    paths = [write_coded_shard(tmp_path / f"train-{k}.h5", list(range(3 * k, 3 * k + 3))) for k in range(2)]
    paths.append(write_coded_shard(tmp_path / "train-empty.h5", []))
    stream = ShardDataset(paths, train=False)
    memory = InMemoryDataset(paths, train=False)
    assert len(memory) == len(stream) == 6
    for (a, b), (c, d) in zip(stream, memory):
        assert torch.equal(a, c) and torch.equal(b, d)
    train_mem = InMemoryDataset(paths, crop_size=8, train=True, seed=1)
    train_mem.set_epoch(2)
    batches = list(train_mem.batches(4))
    assert [tuple(L.shape) for L, _ in batches] == [(4, 1, 8, 8), (2, 1, 8, 8)]
    assert sorted(decode(L[i], ab[i])[0] for L, ab in batches for i in range(len(L))) == list(range(6))
    assert sorted(decode(*s)[0] for s in train_mem) == list(range(6))


# --- training --------------------------------------------------------------------------------


def test_a_few_steps_lower_the_loss(shards):
    seed_everything(0)
    ds = InMemoryDataset(shards["train"], train=False)
    L, ab = next(ds.batches(8))
    model = build_model(TINY_UNET)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = train_module.loss_for(TINY_UNET)
    losses = []
    for _ in range(15):
        loss = loss_fn(model(L), ab)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_train_writes_outputs_and_a_weights_only_checkpoint(shards, tmp_path):
    out = tmp_path / "run"
    summary = train(TINY_UNET, tiny_cfg(epochs=3, crop_size=24), shards["train"], shards["val"], out, progress=False)
    assert summary["epochs_completed"] == 3 and summary["train_images"] == 11 and summary["val_images"] == 3
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
        summary = train(TINY_UNET, tiny_cfg(epochs=4), shards["train"], shards["val"], out, progress=False)
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
    assert ckpt["model_config"] == model_cfg.to_dict() and [row["epoch"] for row in ckpt["history"]] == [1, 2]


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
    argv = [sys.executable, "-c", KILLABLE, *map(str, shards["train"]), str(shards["val"][0]), str(out)]
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
            TINY_UNET, tiny_cfg(epochs=done + 2, lr=1e-3), shards["train"], shards["val"], out, progress=False
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
    assert summary["val_images"] == 0 and summary["val_psnr"] is None and summary["best_val_psnr"] is None
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
    summary = train(TINY_UNET, tiny_cfg(epochs=6, patience=2), shards["train"], shards["val"], tmp_path, progress=False)
    assert summary["stopped_early"] and summary["epochs_completed"] == 4 and summary["best_val_psnr"] == 21.0
    _, best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 2


def test_a_non_finite_training_loss_is_an_error(shards, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "loss_for", lambda cfg: lambda out, ab: (out - ab).pow(2).mean() / 0)
    with pytest.raises(FloatingPointError, match="epoch 1 step 1"):
        train(TINY_UNET, tiny_cfg(), shards["train"], [], tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


# --- settings, device, Snakemake wrapper -----------------------------------------------------


def test_split_settings_assigns_keys_and_names_unknown_ones():
    model_cfg, train_cfg = split_settings({"arch": "unet", "depth": 3, "lr": 0.01, "epochs": 5}, "big")
    assert model_cfg == ModelConfig(arch="unet", depth=3)
    assert train_cfg.lr == 0.01 and train_cfg.epochs == 5 and train_cfg.batch_size == TrainConfig().batch_size
    with pytest.raises(ValueError, match=r"model 'big'.*\['learning_rate'\]"):
        split_settings({"arch": "unet", "learning_rate": 0.01}, "big")


def test_train_config_defaults_follow_the_seed():
    cfg = TrainConfig()
    assert cfg.epochs == 200 and cfg.lr == 1e-3 and cfg.weight_decay == 0 and cfg.patience == 0
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_fake_gpu_falls_back_to_cpu_with_a_log_line(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("COLORIZE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="colorize.device"):
        assert pick_device() == torch.device("cpu")
    assert "CUDA_VISIBLE_DEVICES='0'" in caplog.text and "falling back to CPU" in caplog.text
    with pytest.raises(RuntimeError, match="requested"):
        pick_device("cuda")
    monkeypatch.setenv("COLORIZE_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


class Bag(dict):
    """Stands in for Snakemake's named lists: attribute and key access, ``.get``."""

    __getattr__ = dict.__getitem__


def test_snakemake_script_trains_and_resumes_after_outputs_are_deleted(shards, tmp_path):
    out = tmp_path / "results" / "models" / "tiny"
    outputs = Bag(
        checkpoint=str(out / "checkpoint.pt"), history=str(out / "history.tsv"), curve=str(out / "loss_curve.png")
    )
    settings = {"arch": "unet", "base_channels": 4, "depth": 2, "epochs": 2, "batch_size": 4, "num_workers": 0}
    smk = Bag(
        input=Bag(train=[str(p) for p in shards["train"]], val=[str(p) for p in shards["val"]]),
        output=outputs,
        params=Bag(model=settings),
        wildcards=Bag(model="tiny"),
        log=[str(tmp_path / "logs" / "train.log")],
        threads=1,
    )
    (tmp_path / "logs").mkdir()
    script = str(REPO / "workflow" / "scripts" / "train.py")
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
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
        assert [r["epoch"] for r in torch.load(outputs.checkpoint, weights_only=True)["history"]] == [1, 2, 3]

        settings["bogus"] = 1
        with pytest.raises(ValueError, match="'tiny'.*'bogus'") as err:
            runpy.run_path(script, init_globals={"snakemake": smk}, run_name="__main__")
        sys.excepthook(err.type, err.value, err.tb)  # what the interpreter does with an uncaught error
        assert "'bogus'" in Path(smk.log[0]).read_text()  # the job's log names the bad key
    finally:
        sys.excepthook = sys.__excepthook__
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
