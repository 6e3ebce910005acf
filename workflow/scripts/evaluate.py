"""Snakemake script: per-image metrics of a model and the gray baseline on the test split (colorize.evaluate).

input.checkpoint, input.test (shard paths) -> output.per_image (TSV), output.summary (TSV).
params.method (optional): the model's name in the tables (default: the ``model`` wildcard).
"""

import torch

from colorize.logs import snakemake_log
from colorize.evaluate import evaluate_checkpoint

smk = snakemake  # noqa: F821 (snakemake is injected)
snakemake_log(smk)
torch.set_num_threads(smk.threads)
evaluate_checkpoint(
    smk.input.checkpoint,
    list(smk.input.test),
    smk.output.per_image,
    smk.output.summary,
    method=smk.params.get("method") or smk.wildcards.get("model", "model"),
    size=smk.params.get("size"),
    workers=smk.threads,
)
