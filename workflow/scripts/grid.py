"""Snakemake script: Grayscale | Predicted | Ground truth grid of test images (colorize.evaluate).

input.checkpoint, input.test (shard paths) -> output.png; params.n_rows. The predicted column is
titled with the ``model`` wildcard.
"""

import torch

from colorize.evaluate import grid_from_checkpoints
from colorize.logs import snakemake_log

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
torch.set_num_threads(smk.threads)
grid_from_checkpoints(
    smk.input.checkpoint,
    list(smk.input.test),
    smk.output.png,
    int(smk.params.n_rows),
    label=f"Predicted ({smk.wildcards.model})",
)
