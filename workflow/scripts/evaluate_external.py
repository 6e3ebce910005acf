"""Snakemake script: model vs gray baseline on a folder of photos (colorize.evaluate.evaluate_folder).

input.checkpoint; params.folder, params.preprocess (the shard stage's settings, so each photo is
prepared as a shard image), params.follow_external_links
-> output.per_image, output.summary, output.excluded (TSVs).
"""

import torch

from colorize.evaluate import evaluate_folder_checkpoint
from colorize.logs import snakemake_log

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
torch.set_num_threads(smk.threads)
evaluate_folder_checkpoint(
    smk.input.checkpoint,
    smk.params.folder,
    smk.output.per_image,
    smk.output.summary,
    smk.output.excluded,
    preprocess=smk.params.preprocess,
    follow_external_links=smk.params.follow_external_links,
    method=smk.wildcards.get("model", "model"),
    workers=smk.threads,
)
