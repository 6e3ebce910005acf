"""Train a colorization model on Lab shards, with per-epoch checkpoints and resume.

``train(model_cfg, train_cfg, train_shards, val_shards, out_dir)`` writes to ``out_dir``:

===================  =====================================================================
``checkpoint.pt``    after every epoch (atomically): weights, optimiser, history; resume point
``best.pt``          the weights of the epoch with the best validation PSNR (no optimiser)
``history.tsv``      one row per epoch: epoch, train_loss, val_loss, val_psnr, images_per_s, seconds
``loss_curve.png``   train and validation loss per epoch, validation PSNR on a second axis
``ab_prior.pt``      ``loss: zhang`` only: the train shards' ab-bin prior (computed once, reused)
===================  =====================================================================

Checkpoints are ``colorize.checkpoint``'s format (read with ``weights_only=True``). If ``checkpoint.pt`` exists
with the same model config, training continues after its epoch; with another config it
starts over (with a warning). Every epoch reseeds from ``(seed, epoch)``, so a resumed run
follows the same path as an uninterrupted one.

Several GPUs (``gpus: N``): ``python -m colorize.train`` (``main``) is the entry point that
``torchrun --nproc_per_node=N`` starts N times; the processes train one DDP model
(``colorize.distributed``), each on its share of every global batch of N x ``batch_size``,
with the same steps, validation and resume as one process with that batch; only rank 0
writes files and logs progress.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import __version__, distributed, quantize
from .checkpoint import CheckpointError, make_checkpoint, read_checkpoint, save_checkpoint
from .colorspace import denormalize_ab, denormalize_l, lab_to_rgb
from .data import batches_per_epoch, iterate_batches, make_dataset
from .device import autocast, configure_backends, pick_device, seed_everything, to_device_format
from .metrics import psnr
from .models import (
    LOSSES,
    ModelConfig,
    build_model,
    count_parameters,
    dataclass_from_dict,
    init_logits_to,
    param_groups,
)
from .plots import plot_history
from .shards import fingerprint, shard_info
from .tsv import cell, write_tsv

log = logging.getLogger("colorize.train")

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
HISTORY_NAME = "history.tsv"
CURVE_NAME = "loss_curve.png"
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_psnr", "images_per_s", "seconds")
# Training settings that may change between a checkpoint and its resumption; any other
# change (learning rate, batch size, crop, seed, ...) starts the training over.
RESUMABLE_CHANGES = ("epochs", "num_workers", "in_memory", "log_interval", "patience")
CURVE_INTERVAL_S = (
    30.0  # redraw loss_curve.png at most this often during training (and always at the end)
)


@dataclass
class TrainConfig:
    """How a model trains (a ``models:`` entry's training keys and the ``runtime:`` knobs)."""

    epochs: int = 200  # passes over the training shards (the seed trained 200 epochs)
    batch_size: int = (
        16  # images per optimiser step and process (GPU): the step sees gpus x batch_size
    )
    gpus: int = 1  # processes (GPUs) training together under torchrun; 1 = this process alone
    lr: float = 1e-3  # Adam learning rate (Keras' Adam default, as the seed)
    weight_decay: float = 0.0  # Adam L2 penalty; 0 = none, as the seed
    crop_size: int = 0  # train on random crops of this size; 0 = the stored image size
    flip: bool = True  # random left-right flips in training (the seed's augmentation)
    num_workers: int = 2  # DataLoader worker processes reading shards; 0 = read in the main process
    in_memory: bool = (
        False  # load all shards once (onto the GPU when training there) instead of streaming
    )
    seed: int = 0  # seeds weights, shuffling and augmentation
    log_interval: int = (
        50  # log the running training loss every this many steps; 0 = only per epoch
    )
    patience: int = (
        0  # stop after this many epochs without a better validation PSNR; 0 = never stop early
    )
    init_from: str | None = (
        None  # start from this checkpoint's weights ("shipped": the shipped model)
    )

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return dataclass_from_dict(cls, d, "training")

    def to_dict(self) -> dict:
        return asdict(self)


def split_settings(settings: dict, model_name: str = "?") -> tuple[ModelConfig, TrainConfig]:
    """Split one ``models: {name: {...}}`` config entry into its ModelConfig and TrainConfig.

    Keys are assigned by field name; a key that is neither is an error naming key and model.
    """
    model_keys = {f.name for f in fields(ModelConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    assert not model_keys & train_keys, (
        f"ModelConfig and TrainConfig share fields {model_keys & train_keys}"
    )
    unknown = sorted(set(settings) - model_keys - train_keys)
    if unknown:
        raise ValueError(
            f"model {model_name!r}: unknown setting(s) {unknown}; "
            f"model settings: {sorted(model_keys)}; training settings: {sorted(train_keys)}"
        )
    model_cfg = ModelConfig(**{k: v for k, v in settings.items() if k in model_keys})
    train_cfg = TrainConfig(**{k: v for k, v in settings.items() if k in train_keys})
    return model_cfg, train_cfg


def loss_for(model_cfg: ModelConfig, prior=None):
    """The training loss ``f(raw_output, ab_norm) -> scalar`` for a model's head.

    ``mse`` and ``l1``: the squared / absolute error of the tanh head's ab / 128 (L1 is
    minimised by the per-pixel median of the plausible colours, MSE by their mean, which is
    greyer where a pixel could be either of two hues).
    ``zhang``: the class-rebalanced soft cross-entropy over ab bins (``quantize``), with
    weights from ``prior`` (Q,) and ``model_cfg.rebalance_lambda``; ``prior`` None = uniform.
    """
    if model_cfg.loss == "mse":
        return lambda out, ab_norm: F.mse_loss(out.float(), ab_norm)
    if model_cfg.loss == "l1":
        return lambda out, ab_norm: F.l1_loss(out.float(), ab_norm)
    if model_cfg.loss == "zhang":
        centres = torch.from_numpy(quantize.gamut_bins().copy())
        prior = (
            quantize.uniform_prior(len(centres)) if prior is None else np.asarray(prior, np.float64)
        )
        weights = torch.from_numpy(
            quantize.rebalance_weights(prior, model_cfg.rebalance_lambda)
        ).float()
        return lambda out, ab_norm: quantize.rebalanced_cross_entropy(
            out, denormalize_ab(ab_norm), centres, weights
        )
    raise ValueError(f"unknown loss {model_cfg.loss!r}; choose one of {LOSSES}")


AB_PRIOR_NAME = "ab_prior.pt"  # zhang loss: the train shards' ab prior, computed once per shard set


def _prepare_loss(
    model: nn.Module, model_cfg: ModelConfig, train_shards, out_dir: Path, fingerprint: str
):
    """``loss_for`` the model; for ``zhang`` first the ab prior of the train shards (cached in
    ``out_dir``), also stored in the model's ``head.prior`` so that checkpoints carry it, and
    the output bias set so that a fresh model predicts the rebalanced prior (``prior * w``, the
    best guess that ignores the image); a resumed model's weights then replace it."""
    if model_cfg.loss != "zhang":
        return loss_for(model_cfg)
    prior = quantize.ab_prior(train_shards, out_dir / AB_PRIOR_NAME, fingerprint)
    model.head.prior.copy_(torch.from_numpy(prior))
    init_logits_to(model, prior * quantize.rebalance_weights(prior, model_cfg.rebalance_lambda))
    return loss_for(model_cfg, prior)


# --- checkpoints -----------------------------------------------------------------------------


def _init_weights(model: torch.nn.Module, model_cfg: ModelConfig, source: str) -> None:
    """Fine-tuning: start from another checkpoint's weights (``init_from``), which must be of
    the same architecture; the head's decoding settings (``temperature``) may differ."""
    from .shipped import resolve_checkpoint

    path = resolve_checkpoint(source)
    ckpt = read_checkpoint(path)
    theirs = {**ModelConfig().to_dict(), **ckpt["model_config"]}
    ours = model_cfg.to_dict()
    differ = {
        k: (theirs.get(k), v)
        for k, v in ours.items()
        if theirs.get(k) != v
        and k not in ("temperature", "chroma_gain", "freeze_encoder", "encoder_lr_scale")
    }
    if differ:
        raise ValueError(
            f"init_from {source}: {path} is a different model ({', '.join(f'{k}: {a!r} there, {b!r} here' for k, (a, b) in differ.items())})"
        )
    model.load_state_dict(ckpt["model"])
    log.info("starting from the weights of %s (epoch %s of its training)", path, ckpt.get("epoch"))


def _resume_state(
    path: Path, model_cfg: ModelConfig, train_cfg: TrainConfig, data: dict
) -> dict | None:
    """The checkpoint to continue from, or None: absent, unreadable, or trained otherwise.

    Resuming needs the same model config, the same data and the same training settings
    except ``RESUMABLE_CHANGES`` (so raising ``epochs`` continues a finished run).
    """
    if not path.exists():
        return None
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as exc:
        log.warning("cannot resume: %s; starting over", exc)
        return None
    # defaults filled in: a checkpoint saved before a setting existed compares with that setting's default
    if {**ModelConfig().to_dict(), **ckpt["model_config"]} != model_cfg.to_dict():
        log.warning(
            "%s has model config %s, now %s; starting over",
            path,
            ckpt["model_config"],
            model_cfg.to_dict(),
        )
        return None
    old, new = {**TrainConfig().to_dict(), **ckpt["train_config"]}, train_cfg.to_dict()
    changed = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    blocking = {k: change for k, change in changed.items() if k not in RESUMABLE_CHANGES}
    if blocking:
        log.warning(
            "%s was trained with other settings (old, new): %s; starting over", path, blocking
        )
        return None
    if ckpt.get("data") != data:
        log.warning(
            "%s was trained on other shards (%s, now %s); starting over",
            path,
            ckpt.get("data"),
            data,
        )
        return None
    if changed:
        log.info("resuming with changed settings (old, new): %s", changed)
    return ckpt


# --- model card ----------------------------------------------------------------------------


def model_card(
    model,
    model_cfg: ModelConfig,
    history: list[dict],
    best_val_psnr,
    n_train: int,
    n_val: int,
    device,
    extra: dict | None = None,
) -> dict:
    """What a checkpoint says of itself (``checkpoint.describe`` prints it): architecture, size,
    data, budget and the metrics at the end of training. Plain values only (``weights_only``)."""
    last = history[-1] if history else {}
    return {
        "architecture": model_cfg.arch,
        "loss": model_cfg.loss,
        "parameters": count_parameters(model),
        "trainable_parameters": count_parameters(model, trainable=True),
        "train_images": n_train,
        "val_images": n_val,
        "epochs": int(last.get("epoch", 0)),
        "image_passes": int(last.get("epoch", 0))
        * n_train,  # every epoch visits each training image once
        "device": str(device),
        "train_seconds": float(sum(row.get("seconds") or 0.0 for row in history)),
        "best_val_psnr": best_val_psnr,
        "final_val_psnr": last.get("val_psnr"),
        "final_val_loss": last.get("val_loss"),
        "final_train_loss": last.get("train_loss"),
        "torch_version": str(torch.__version__),
        "colorize_version": __version__,  # the colorize that trained it (`colorize info`)
        **(extra or {}),
    }


# --- history --------------------------------------------------------------------------


def write_history(history: list[dict], path: Path) -> None:
    """TSV with ``HISTORY_COLUMNS``; a missing value (no validation images) is an empty field."""
    write_tsv(history, path, HISTORY_COLUMNS)


# --- one epoch -------------------------------------------------------------------------------


def _train_one_epoch(
    model, optimizer, loss_fn, batches, device, *, epoch, log_interval, progress, total_steps
):
    """One pass over ``batches``; returns (mean loss per image, number of images) of this process.

    With several processes each one's loss is weighted by its share of the global batch
    (``distributed.batch_weight``), so that DDP's averaged gradient is the global batch's.
    """
    model.train()
    loss_sum, n_images = 0.0, 0
    bar = tqdm(
        batches,
        total=total_steps,
        desc=f"epoch {epoch}",
        unit="batch",
        leave=False,
        disable=not progress,
    )
    t0 = time.perf_counter()
    for step, (L, ab) in enumerate(bar, start=1):
        L = to_device_format(L, device, non_blocking=True)
        ab = to_device_format(ab, device, non_blocking=True)
        with autocast(device):
            out = model(L)
        loss = loss_fn(out, ab)
        weight = distributed.batch_weight(len(L), device)
        optimizer.zero_grad(set_to_none=True)
        (loss if weight == 1.0 else loss * weight).backward()
        optimizer.step()

        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"training loss is {loss_value} at epoch {epoch} step {step}")
        loss_sum += loss_value * len(L)
        n_images += len(L)
        bar.set_postfix(loss=f"{loss_sum / n_images:.4g}")
        if log_interval and step % log_interval == 0:
            log.info(
                "epoch %d step %d: loss %.5g, %.1f images/s",
                epoch,
                step,
                loss_sum / n_images,
                n_images / (time.perf_counter() - t0),
            )
    bar.close()
    return (loss_sum / n_images if n_images else math.nan), n_images


@torch.inference_mode()
def evaluate(model, loss_fn, batches, device) -> tuple[float, float, int]:
    """(mean loss, mean per-image RGB PSNR, images) over ``batches``; NaNs when there are none.

    PSNR compares the 8-bit RGB of (true L, predicted ab) with that of (true L, true ab), so
    it is in the units a viewer sees and comparable across models and losses.
    """
    model.eval()
    loss_sum, psnr_sum, n = 0.0, 0.0, 0
    for L, ab in batches:
        L = to_device_format(L, device, non_blocking=True)
        ab = to_device_format(ab, device, non_blocking=True)
        with autocast(device):
            out = model(L)
        loss_sum += loss_fn(out, ab).item() * len(L)
        pred = denormalize_ab(model.ab_from_output(out).float()).cpu().numpy()
        true = denormalize_ab(ab.float()).cpu().numpy()
        lightness = denormalize_l(L.float()[:, 0]).cpu().numpy()
        for Li, pi, ti in zip(lightness, pred, true):
            psnr_sum += psnr(lab_to_rgb(Li, pi), lab_to_rgb(Li, ti))
        n += len(L)
    if n == 0:
        return math.nan, math.nan, 0
    return loss_sum / n, psnr_sum / n, n


def _epochs_without_improvement(history: list[dict]) -> int:
    """Epochs since the best validation PSNR (0 when the last epoch is the best or there is none)."""
    psnrs = [row["val_psnr"] for row in history if row.get("val_psnr") is not None]
    if not psnrs:
        return 0
    return len(psnrs) - 1 - int(np.argmax(psnrs))


# --- the loop --------------------------------------------------------------------------------


def _mean_over_ranks(means: list[float], n: int, device) -> tuple[list[float], int]:
    """Per-image means over every process's images, from each one's ``means`` over its ``n``
    images (NaN where no process had any), and the images in all; one process: as given."""
    if distributed.world_size() == 1:
        return means, n
    *sums, total = distributed.all_sum([m * n if n else 0.0 for m in means] + [n], device)
    return [s / total if total else math.nan for s in sums], int(total)


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_shards: list[Path],
    val_shards: list[Path],
    out_dir: Path,
    *,
    progress: bool = True,
    device: str | torch.device | None = None,
    card: dict | None = None,
) -> dict:
    """Train (or resume training) and write checkpoints, history and curve to ``out_dir``; returns a summary.

    ``device``: ``None``/``"auto"`` picks CUDA when it works, else CPU (see ``device.pick_device``).
    ``card``: what the caller knows of the run (e.g. ``{"dataset": name}``), stored in every
    checkpoint's model card with what training measures (``model_card``; ``colorize info``).
    Under torchrun (``main``) this is one of ``train_cfg.gpus`` processes; only rank 0 writes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = _Outputs(out_dir)
    cfg = train_cfg
    world, main = distributed.world_size(), distributed.is_main()
    if cfg.gpus != world:
        raise ValueError(
            f"gpus: {cfg.gpus}, but {world} process(es) run this training: start it with "
            f"torchrun --nproc_per_node={cfg.gpus} -m colorize.train (the workflow's train rule does)"
        )
    device = pick_device(device)
    configure_backends(device)
    if world > 1:
        card = {**(card or {}), "processes": world, "global_batch_size": cfg.batch_size * world}
    run = _start(model_cfg, cfg, train_shards, val_shards, paths, device, main)
    trained = distributed.wrap(
        run.model, device
    )  # DDP with several processes, else the model itself
    train_data, val_data, workers = _datasets(
        model_cfg, cfg, train_shards, val_shards, run, device, world
    )
    pin = device.type == "cuda" and not cfg.in_memory

    t_start = last_plot = time.perf_counter()
    stopped_early = False
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        if cfg.patience and _epochs_without_improvement(run.history) >= cfg.patience:
            log.info("early stop: no better validation PSNR for %d epochs", cfg.patience)
            stopped_early = True
            break
        improved = _one_epoch(
            run,
            trained,
            train_data,
            val_data,
            cfg,
            epoch,
            device,
            workers,
            pin,
            progress=progress and main,
        )
        if main:
            _save(
                run,
                model_cfg,
                cfg,
                paths,
                epoch,
                improved,
                len(train_data),
                len(val_data),
                device,
                card,
            )
            if time.perf_counter() - last_plot >= CURVE_INTERVAL_S:
                plot_history(run.history, paths.curve, title=model_cfg.arch)
                last_plot = time.perf_counter()
        row = run.history[-1]
        log.info(
            "epoch %d/%d: train loss %.5g, val loss %s, val PSNR %s dB%s, %.1f images/s, %.1f s",
            epoch, cfg.epochs, row["train_loss"], cell(row["val_loss"]), cell(row["val_psnr"]),
            " (best)" if improved and row["val_psnr"] is not None else "", row["images_per_s"], row["seconds"],
        )  # fmt: skip

    # Outputs also exist when there was nothing left to train (e.g. resumed after the last epoch).
    if main:
        write_history(run.history, paths.history)
        plot_history(run.history, paths.curve, title=model_cfg.arch)
    return _summary(
        run,
        paths,
        device,
        len(train_data),
        len(val_data),
        stopped_early,
        time.perf_counter() - t_start,
    )


class _Outputs:
    """The files a training run writes into its folder."""

    def __init__(self, out_dir: Path):
        self.checkpoint, self.best = out_dir / CHECKPOINT_NAME, out_dir / BEST_NAME
        self.history, self.curve = out_dir / HISTORY_NAME, out_dir / CURVE_NAME
        self.folder = out_dir


@dataclass
class _Run:
    """What a training run carries from epoch to epoch (and a checkpoint restores)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: object
    data: (
        dict  # the shards' fingerprints and image size: a checkpoint resumes only on the same data
    )
    history: list = field(default_factory=list)
    best_val_psnr: float | None = None
    start_epoch: int = 1
    resumed: bool = False


def _start(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    train_shards,
    val_shards,
    paths: _Outputs,
    device,
    main: bool,
) -> _Run:
    """Model, optimiser and loss, fresh or from the last checkpoint (the same in every process)."""
    seed_everything(cfg.seed)
    model = to_device_format(build_model(model_cfg), device)
    optimizer = torch.optim.Adam(
        param_groups(model, cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    data = {
        "train": fingerprint(train_shards),
        "val": fingerprint(val_shards),
        "image_size": next((size for n, size in map(shard_info, train_shards) if n), None),
    }
    with (
        distributed.main_first()
    ):  # zhang: rank 0 computes and caches the ab prior, the others read it
        loss_fn = _prepare_loss(model, model_cfg, train_shards, paths.folder, data["train"])
    run = _Run(model, optimizer, loss_fn, data)
    resumed = _resume_state(paths.checkpoint, model_cfg, cfg, data)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        run.history, run.best_val_psnr = resumed["history"], resumed["best_val_psnr"]
        run.start_epoch, run.resumed = resumed["epoch"] + 1, True
        log.info(
            "resuming from %s: epoch %d done, continuing at epoch %d",
            paths.checkpoint,
            resumed["epoch"],
            run.start_epoch,
        )
    else:
        if paths.checkpoint.exists() and main:
            paths.checkpoint.unlink()
            paths.best.unlink(missing_ok=True)
        if cfg.init_from:
            _init_weights(model, model_cfg, cfg.init_from)
    if run.start_epoch > cfg.epochs:
        log.info(
            "nothing left to train: %s already holds epoch %d of %d",
            paths.checkpoint,
            run.start_epoch - 1,
            cfg.epochs,
        )
    return run


def _datasets(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    train_shards,
    val_shards,
    run: _Run,
    device,
    world: int,
):
    """This process's share of the train and val shards, streamed (or resident in memory), and
    the number of loader workers."""
    data_device = device if cfg.in_memory else "cpu"
    share = dict(rank=distributed.rank(), world_size=world)
    train_data = make_dataset(
        train_shards, crop_size=cfg.crop_size, train=True, flip=cfg.flip, seed=cfg.seed,
        in_memory=cfg.in_memory, device=data_device, **share,
    )  # fmt: skip
    val_data = make_dataset(
        val_shards,
        crop_size=None,
        train=False,
        in_memory=cfg.in_memory,
        device=data_device,
        **share,
    )
    if len(train_data) == 0:
        raise ValueError(f"no training images in {len(train_shards)} shard(s)")
    workers = 0 if cfg.in_memory else min(cfg.num_workers, len(train_shards))
    log.info(
        "model %s (%d parameters) on %s; %d training images (%dpx samples), %d validation images; "
        "epochs %d..%d, batch %d x %d process(es), about %d steps/epoch, %d workers",
        model_cfg.arch, count_parameters(run.model), device, len(train_data), train_data.sample_size or 0,
        len(val_data), run.start_epoch, cfg.epochs, cfg.batch_size, world,
        batches_per_epoch(train_data, cfg.batch_size, workers), workers,
    )  # fmt: skip
    if len(val_data) == 0:
        log.warning(
            "no validation images: val_loss and val_psnr stay empty; best.pt follows the last epoch"
        )
    return train_data, val_data, workers


def _one_epoch(
    run: _Run,
    trained,
    train_data,
    val_data,
    cfg: TrainConfig,
    epoch: int,
    device,
    workers: int,
    pin: bool,
    *,
    progress: bool,
) -> bool:
    """Train one epoch and validate; appends its history row. Returns whether validation PSNR
    improved (always True without validation images: best.pt follows the last epoch)."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed, epoch)
    train_data.set_epoch(epoch)
    batches = iterate_batches(train_data, cfg.batch_size, num_workers=workers, pin_memory=pin)
    train_loss, n_images = _train_one_epoch(
        trained, run.optimizer, run.loss_fn, batches, device, epoch=epoch, log_interval=cfg.log_interval,
        progress=progress, total_steps=batches_per_epoch(train_data, cfg.batch_size, workers),
    )  # fmt: skip
    train_seconds = time.perf_counter() - t0
    (train_loss,), n_images = _mean_over_ranks([train_loss], n_images, device)

    val_batches = iterate_batches(val_data, cfg.batch_size, num_workers=0, pin_memory=pin)
    val_loss, val_psnr, n_val = evaluate(run.model, run.loss_fn, val_batches, device)
    (val_loss, val_psnr), _ = _mean_over_ranks([val_loss, val_psnr], n_val, device)

    improved = math.isnan(val_psnr) or run.best_val_psnr is None or val_psnr > run.best_val_psnr
    if not math.isnan(val_psnr) and improved:
        run.best_val_psnr = val_psnr
    run.history.append(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": None if math.isnan(val_loss) else val_loss,
            "val_psnr": None if math.isnan(val_psnr) else val_psnr,
            "images_per_s": n_images / train_seconds,
            "seconds": time.perf_counter() - t0,  # training and validation, not saving
        }
    )
    return improved


def _save(
    run: _Run,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    paths: _Outputs,
    epoch: int,
    improved: bool,
    n_train: int,
    n_val: int,
    device,
    card: dict | None,
) -> None:
    """The epoch's checkpoint (resumable), best.pt when it improved (without the optimiser),
    and the history table."""
    ckpt = make_checkpoint(
        run.model, run.optimizer, model_cfg, cfg, run.data, epoch, run.best_val_psnr, run.history
    )
    ckpt["card"] = model_card(
        run.model, model_cfg, run.history, run.best_val_psnr, n_train, n_val, device, card
    )
    save_checkpoint(ckpt, paths.checkpoint)
    if improved:
        ckpt["optimizer"] = None
        save_checkpoint(ckpt, paths.best)
    write_history(run.history, paths.history)


def _summary(
    run: _Run,
    paths: _Outputs,
    device,
    n_train: int,
    n_val: int,
    stopped_early: bool,
    seconds: float,
) -> dict:
    last = run.history[-1] if run.history else {}
    return {
        "device": str(device),
        "parameters": count_parameters(run.model),
        "train_images": n_train,
        "val_images": n_val,
        "resumed_from_epoch": run.start_epoch - 1 if run.resumed else None,
        "epochs_completed": int(last.get("epoch", 0)),
        "stopped_early": stopped_early,
        "train_loss": last.get("train_loss"),
        "val_loss": last.get("val_loss"),
        "val_psnr": last.get("val_psnr"),
        "best_val_psnr": run.best_val_psnr,
        "seconds": seconds,
        "checkpoint": str(paths.checkpoint),
        "best": str(paths.best),
        "history": str(paths.history),
        "curve": str(paths.curve),
    }


# --- the entry point torchrun starts -----------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m colorize.train",
        description="Train one model on Lab shards; under torchrun --nproc_per_node=N, one of N DDP processes "
                    "(the settings' gpus must be N x nodes).",
    )  # fmt: skip
    p.add_argument(
        "--settings",
        required=True,
        help='the models: entry as JSON, e.g. \'{"arch": "unet", "gpus": 2}\'',
    )
    p.add_argument("--train", nargs="+", required=True, metavar="SHARD", help="train shards (.h5)")
    p.add_argument("--val", nargs="*", default=[], metavar="SHARD", help="validation shards (.h5)")
    p.add_argument(
        "--out",
        required=True,
        help="folder for checkpoint.pt, best.pt, history.tsv, loss_curve.png",
    )
    p.add_argument("--name", default="?", help="the model's name (in messages and the model card)")
    p.add_argument(
        "--card", default="{}", help="JSON: what else the model card should say (e.g. the dataset)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """``python -m colorize.train``: one training process, and what torchrun starts N times.

    Every rank logs to stderr, prefixed ``rank R/N``; all but rank 0 only their first line
    (device, share) and warnings, so the log reads like one process's.
    """
    args = _parse_args(argv)
    rank, world = distributed.launched()
    logging.basicConfig(
        level=logging.INFO,
        force=True,
        format=f"%(asctime)s rank {rank}/{world} %(name)s %(levelname)s: %(message)s",
    )
    with distributed.joined() as device:
        if rank:
            logging.getLogger("colorize").setLevel(logging.WARNING)
        model_cfg, train_cfg = split_settings(json.loads(args.settings), args.name)
        summary = train(
            model_cfg,
            train_cfg,
            [Path(p) for p in args.train],
            [Path(p) for p in args.val],
            Path(args.out),
            progress=False,
            device=device,
            card=json.loads(args.card),
        )
        log.info("done: %s", summary)


if __name__ == "__main__":
    main()
