"""Snakemake script: colorize every image of a folder at full resolution (colorize.infer).

input.checkpoint; params.input_dir (folder), params.recursive; config runtime.colorize_batch_size
(a machine knob: read from the config, so changing it reruns nothing)
-> output.dir (directory(): colorized images at full resolution, same relative names) and
output.status (TSV: input, status, output, width, height, reason), which must lie *outside*
output.dir. Files that cannot be read are listed in the status TSV, never fatal; the job fails
only when not one image could be colorized.
"""

import torch

from colorize.checkpoint import load_model, working_size
from colorize.infer import collect_inputs, colorize_files
from colorize.logs import snakemake_log

smk = snakemake  # noqa: F821 (snakemake is injected)
snakemake_log(smk)
torch.set_num_threads(smk.threads)
model, ckpt = load_model(smk.input.checkpoint)
inputs = collect_inputs([smk.params.input_dir], recursive=smk.params.recursive, exclude=[smk.output.dir])
results = colorize_files(
    model,
    inputs,
    smk.output.dir,
    size=working_size(ckpt),
    batch_size=smk.config["runtime"]["colorize_batch_size"],  # None: 16 on CUDA, 4 on CPU
    workers=max(1, smk.threads),
    progress=False,
    status_path=smk.output.status,
)
if not any(r.ok for r in results):
    raise SystemExit(f"no image in {smk.params.input_dir} could be colorized; see {smk.output.status}")
