"""Snakemake script: predicted ab for every test image, as one HDF5 (logic in colorize.infer).

input.checkpoint, input.test (shard paths) -> output.h5; params.size (optional working size).
"""

import torch

from colorize.infer import load_model, write_shard_predictions
from colorize.logs import snakemake_log

snakemake_log(snakemake)  # noqa: F821 (snakemake is injected)
torch.set_num_threads(snakemake.threads)  # noqa: F821
model, _ = load_model(snakemake.input.checkpoint)  # noqa: F821
write_shard_predictions(
    model, list(snakemake.input.test), snakemake.output.h5, size=snakemake.params.get("size")  # noqa: F821
)  # noqa: F821
