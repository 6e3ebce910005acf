"""Snakemake script: Grayscale | Predicted | Ground truth grid of test images (colorize.evaluate).

input.checkpoint, input.test (shard paths) [, input.other: a second checkpoint] -> output.png.
params.n_rows; params.label / params.other_label (optional column titles).
"""

import torch

from colorize.logs import snakemake_log
from colorize.evaluate import grid_from_checkpoints

smk = snakemake  # noqa: F821 (snakemake is injected)
snakemake_log(smk)
torch.set_num_threads(smk.threads)
grid_from_checkpoints(
    smk.input.checkpoint,
    list(smk.input.test),
    smk.output.png,
    int(smk.params.n_rows),
    label=smk.params.get("label") or f"Predicted ({smk.wildcards.get('model', 'model')})",
    other_checkpoint=smk.input.get("other"),
    other_label=smk.params.get("other_label") or "Other model",
)
