"""Snakemake script: model vs gray baseline on a folder of photos (colorize.metrics.evaluate_folder).

input.checkpoint; params.folder, image_size, resize_policy, max_pixels, min_side,
gray_chroma_threshold, follow_external_links (the preprocessing settings, so each photo is prepared as a shard image)
-> output.per_image, output.summary, output.excluded (TSVs).
"""

import torch

from colorize.logs import snakemake_log
from colorize.metrics import evaluate_folder_checkpoint

smk = snakemake  # noqa: F821 (snakemake is injected)
snakemake_log(smk)
torch.set_num_threads(smk.threads)
evaluate_folder_checkpoint(
    smk.input.checkpoint,
    smk.params.folder,
    smk.output.per_image,
    smk.output.summary,
    smk.output.excluded,
    image_size=smk.params.image_size,
    resize_policy=smk.params.resize_policy,
    max_pixels=smk.params.max_pixels,
    min_side=smk.params.min_side,
    gray_chroma_threshold=smk.params.gray_chroma_threshold,
    follow_external_links=smk.params.follow_external_links,
    method=smk.wildcards.get("model", "model"),
    workers=smk.threads,
)
