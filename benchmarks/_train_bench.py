"""Helpers shared by the training-data benchmarks (``training_data.py`` on CPU, ``gpu_all.py``):
synthetic shards, the training step as ``colorize.train`` runs it, and timed loops."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:  # the installed package, else the repository's src/ (a bare GPU node)
    import colorize  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def smooth_rgb(size: int, seed: int) -> np.ndarray:
    """A smooth, colourful uint8 RGB image with some texture, unique per seed (no data needed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    freq, phase = rng.uniform(0.5, 3, 3), rng.uniform(0, 2 * np.pi, 3)
    chans = [
        0.5 + 0.35 * np.sin(2 * np.pi * freq[c] * (x * (c + 1) + y) + phase[c]) for c in range(3)
    ]
    img = np.stack(chans, -1) + rng.normal(0, 0.03, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_shards(folder: Path, n_images: int, size: int, n_shards: int) -> list[Path]:
    """``n_shards`` train shards holding ``n_images`` synthetic photos at ``size``, written by
    the project's own ``ShardWriter`` (the format training reads)."""
    from colorize.colorspace import lab_planes
    from colorize.shards import ShardWriter

    folder.mkdir(parents=True, exist_ok=True)
    base = [lab_planes(smooth_rgb(size, s)).transpose(1, 2, 0) for s in range(min(n_images, 32))]
    paths = []
    for k in range(n_shards):
        path = folder / f"train-{k:03d}.h5"
        with ShardWriter(path, size, "train") as w:
            for i in range(k, n_images, n_shards):
                w.append(base[i % len(base)], f"{i}.png", f"{i:064d}")
        paths.append(path)
    return paths


def model_for(arch: str, small: bool = False):
    from colorize.models import ModelConfig, build_model

    if arch == "unet":
        cfg = (
            ModelConfig(arch="unet", base_channels=8, depth=2)
            if small
            else ModelConfig(arch="unet")
        )
    else:
        cfg = ModelConfig(arch=arch)
    torch.manual_seed(0)
    return cfg, build_model(cfg)


class Stepper:
    """One optimiser step as ``colorize.train._train_one_epoch`` takes it: batch to the device
    (``non_blocking``), forward under autocast, the model's loss, backward, Adam step, and
    ``loss.item()`` (the loop reads the loss every step), in the layout the project uses on
    ``device`` (``device.memory_format``: channels_last on CUDA and the CPU). ``precision``:
    ``fp32`` (no autocast) or ``bf16`` (bf16 autocast, what the project does on CUDA).
    """

    def __init__(self, arch: str, device: torch.device, precision: str, small: bool = False):
        from colorize.device import memory_format
        from colorize.train import loss_for

        self.device, self.precision = device, precision
        self.cfg, model = model_for(arch, small)
        self.fmt = memory_format(device)
        self.model = model.to(device=device, memory_format=self.fmt).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.loss_fn = loss_for(self.cfg)

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, L: torch.Tensor, ab: torch.Tensor, read_loss: bool = True):
        L = L.to(device=self.device, memory_format=self.fmt, non_blocking=True)
        ab = ab.to(device=self.device, memory_format=self.fmt, non_blocking=True)
        with self.autocast():
            out = self.model(L)
        loss = self.loss_fn(out, ab)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item() if read_loss else loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_model_only(
    step: Stepper, batch: int, size: int, seconds: float, min_steps: int, read_loss: bool
) -> dict:
    """Images/s of ``step`` on synthetic tensors already on the device (the ceiling)."""
    dev = step.device
    L = torch.rand(batch, 1, size, size, device=dev) * 2 - 1
    ab = torch.rand(batch, 2, size, size, device=dev) * 0.6 - 0.3
    for _ in range(3):
        step(L, ab)
    sync(dev)
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < seconds:
        step(L, ab, read_loss=read_loss)
        n += 1
    sync(dev)
    dt = time.perf_counter() - t0
    return {"images": n * batch, "seconds": dt, "img/s": n * batch / dt}


def timed_loop(step: Stepper, batches, skip: int = 1) -> dict:
    """Images/s of the full loop over an epoch's ``batches`` (the first ``skip`` batches, which
    carry worker start-up and warm-up, are run but not timed; the epoch's start-up is reported)."""
    t_start = time.perf_counter()
    it = iter(batches)
    for _ in range(skip):
        L, ab = next(it)
        step(L, ab)
    sync(step.device)
    t0 = time.perf_counter()
    n = 0
    for L, ab in it:
        step(L, ab)
        n += len(L)
    sync(step.device)
    dt = time.perf_counter() - t0
    return {
        "images": n,
        "seconds": dt,
        "img/s": n / dt if dt > 0 else float("nan"),
        "startup_s": t0 - t_start,
    }


def timed_loader(batches, skip: int = 1) -> dict:
    """Images/s of a loader alone (batches consumed and dropped)."""
    t_start = time.perf_counter()
    it = iter(batches)
    for _ in range(skip):
        next(it)
    t0 = time.perf_counter()
    n = sum(len(L) for L, _ in it)
    dt = time.perf_counter() - t0
    return {
        "images": n,
        "seconds": dt,
        "img/s": n / dt if dt > 0 else float("nan"),
        "startup_s": t0 - t_start,
    }
