"""Snakemake script: train one model on a dataset's shards (logic in colorize.train).

params.model: the ``models: {name: {...}}`` entry (model and training settings mixed).
input.train / input.val: shard paths. output.checkpoint / history / curve (optional best).

Snakemake deletes a job's declared outputs before it runs, so the resumable state lives in
``<checkpoint dir>/train_state/`` (not an output) and is copied to the outputs at the end:
a killed or timed-out job rerun with ``--rerun-incomplete`` continues from its last epoch.
"""

import logging
import shutil
import sys
from pathlib import Path

import torch

from colorize.logs import snakemake_log
from colorize.train import BEST_NAME, CHECKPOINT_NAME, CURVE_NAME, HISTORY_NAME, split_settings, train

snakemake_log(snakemake)  # noqa: F821 (snakemake is injected)
log = logging.getLogger("colorize.workflow.train")


def copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    model_name = smk.wildcards.get("model", "?")
    model_cfg, train_cfg = split_settings(dict(smk.params.model), model_name)
    checkpoint = Path(smk.output.checkpoint)
    state_dir = checkpoint.parent / "train_state"
    log.info("model %s: %s; %s; state in %s", model_name, model_cfg, train_cfg, state_dir)
    summary = train(
        model_cfg,
        train_cfg,
        [Path(p) for p in smk.input.train],
        [Path(p) for p in smk.input.val],
        state_dir,
        progress=sys.stderr.isatty(),
    )
    copy_atomic(state_dir / CHECKPOINT_NAME, checkpoint)
    copy_atomic(state_dir / HISTORY_NAME, Path(smk.output.history))
    copy_atomic(state_dir / CURVE_NAME, Path(smk.output.curve))
    if smk.output.get("best"):
        copy_atomic(state_dir / BEST_NAME, Path(smk.output.best))
    log.info("done: %s", summary)


main(snakemake)  # noqa: F821
