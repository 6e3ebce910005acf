"""Snakemake script: per-image metrics of a model and the gray baseline on the test split (colorize.evaluate).

input.checkpoint, input.test (shard paths) -> output.per_image, output.summary, output.by_source (TSVs; params.single_source: the one
source's name, or None when the images are named <source>/<path>);
the model is named in the tables by its ``model`` wildcard.
"""

import torch

from colorize.evaluate import evaluate_checkpoint
from colorize.logs import snakemake_log

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
torch.set_num_threads(smk.threads)
evaluate_checkpoint(
    smk.input.checkpoint,
    list(smk.input.test),
    smk.output.per_image,
    smk.output.summary,
    method=smk.wildcards.model,
    workers=smk.threads,
    by_source_path=smk.output.by_source,
    single_source=smk.params.single_source,
)
