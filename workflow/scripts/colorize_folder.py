"""Snakemake script: colorize one chunk of a folder at full resolution (colorize.chunks.colorize_chunk).

wildcards.chunk, wildcards.n_chunks (chunk K of N); input.checkpoint; params.input_dir (the
folder, with its sub-folders), params.follow_links (colorize.follow_external_links: follow links
that leave it), params.images (the one tree all chunks write into, same relative
names), params.excluded (never an input: every model's colorized tree), params.journal (the
chunk's status table as the run goes, read back by the rerun of a failed or changed chunk: only
photos not done, or changed, are done again), params.members (the chunk's fingerprint: only a
rerun trigger); config runtime.colorize_batch_size (a machine knob: read from the config, so
changing it reruns nothing) -> output.status (the chunk's status TSV: input, status, output,
width, height, reason, source, settings). Files that cannot be read are listed there, never
fatal; colorize_status fails if not one photo of the folder could be colorized.
"""

from colorize.chunks import colorize_chunk
from colorize.infer import one_malloc_arena
from colorize.logs import snakemake_log
from colorize.runtime import working_size
from colorize.shipped import load_for_inference

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
one_malloc_arena()  # before torch or onnxruntime start their threads (loading the model)
# as `colorize predict`: on a machine without a GPU the shipped model runs in onnxruntime
model, ckpt = load_for_inference(smk.input.checkpoint, threads=smk.threads)
if not hasattr(model, "predict_normalized"):  # a PyTorch module
    import torch

    torch.set_num_threads(smk.threads)
colorize_chunk(
    model,
    smk.params.input_dir,
    int(smk.wildcards.chunk),
    int(smk.wildcards.n_chunks),
    smk.params.images,
    smk.output.status,
    smk.params.journal,
    exclude=[smk.params.excluded],
    follow_links=smk.params.follow_links,
    size=working_size(ckpt),
    batch_size=smk.config["runtime"]["colorize_batch_size"],  # None: 16 on CUDA, 4 on CPU
    workers=max(1, smk.threads),
    progress=False,
)
