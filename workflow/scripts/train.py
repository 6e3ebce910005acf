"""Snakemake script: train one model on a dataset's shards (logic in colorize.train).

params.model: the ``models: {name: {...}}`` entry (model and training settings mixed).
config ``runtime:``: the machine knobs num_workers, in_memory, log_interval (global, then the
model's own ``runtime.models.<name>``), read from the config so that changing them retrains
nothing (params are a rerun trigger, the config is not).
input.train / input.val: shard paths. output.checkpoint / history / curve (optional best).

Snakemake deletes a job's declared outputs before it runs, so the resumable state lives in
``<checkpoint dir>/train_state/`` (not an output) and is copied to the outputs at the end:
a killed or timed-out job rerun with ``--rerun-incomplete`` continues from its last epoch.

A model with ``gpus: N`` (N > 1) trains in N processes: ``torchrun --standalone
--nproc_per_node=N -m colorize.train`` (one launcher on this node, which starts the N DDP
processes; SLURM runs this script once per job). Their log lines go to this job's log.
With N = 1 the training runs in this process, as it always did.
"""

import json
import logging
import sys
from pathlib import Path

import torch

from colorize.distributed import run_torchrun
from colorize.files import atomic_copy
from colorize.logs import snakemake_log
from colorize.train import (
    BEST_NAME,
    CHECKPOINT_NAME,
    CURVE_NAME,
    HISTORY_NAME,
    split_settings,
    train,
)

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
log = logging.getLogger("colorize.workflow.train")


RUNTIME_KEYS = ("num_workers", "in_memory", "log_interval")  # TrainConfig fields set by `runtime:`


def runtime_settings(config: dict, model_name: str) -> dict:
    """The `runtime:` training knobs for one model: the global ones, then its own overrides."""
    runtime = config.get("runtime", {})
    knobs = {k: runtime[k] for k in RUNTIME_KEYS if k in runtime}
    knobs.update(runtime.get("models", {}).get(model_name, {}))
    return knobs


def echo_to_log(line: str) -> None:
    """Write a line the training processes printed (already a formatted log line) as it is to
    where this script logs: stderr and the job's log file, through the handlers' own streams."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream.write(line)
            handler.flush()


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    model_name = smk.wildcards.get("model", "?")
    settings = {**smk.params.model, **runtime_settings(smk.config, model_name)}
    model_cfg, train_cfg = split_settings(settings, model_name)
    checkpoint = Path(smk.output.checkpoint)
    state_dir = checkpoint.parent / "train_state"
    card = {"dataset": smk.params.get("dataset"), "model": model_name}
    log.info("model %s: %s; %s; state in %s", model_name, model_cfg, train_cfg, state_dir)
    if train_cfg.gpus == 1:
        summary = train(
            model_cfg,
            train_cfg,
            [Path(p) for p in smk.input.train],
            [Path(p) for p in smk.input.val],
            state_dir,
            progress=sys.stderr.isatty(),
            card=card,
        )
        log.info("done: %s", summary)
    else:
        args = [
            "--settings",
            json.dumps(settings),
            "--train",
            *smk.input.train,
            "--val",
            *smk.input.val,
            "--out",
            str(state_dir),
            "--name",
            model_name,
            "--card",
            json.dumps(card),
        ]
        run_torchrun(train_cfg.gpus, "colorize.train", args, threads=smk.threads, echo=echo_to_log)
    atomic_copy(state_dir / CHECKPOINT_NAME, checkpoint)
    atomic_copy(state_dir / HISTORY_NAME, Path(smk.output.history))
    atomic_copy(state_dir / CURVE_NAME, Path(smk.output.curve))
    if smk.output.get("best"):
        atomic_copy(state_dir / BEST_NAME, Path(smk.output.best))


main(smk)
