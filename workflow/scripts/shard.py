"""Stages 2-3 for one shard: decode, resize, Lab, HDF5 (colorize.preprocess.build_shard).

input.scan; params.root (the raw folder), params.preprocess (PreprocessConfig fields),
params.compression -> output.h5 (the shard), output.status (one row per input: ok or the reason).
params.members (a digest of the shard's photos) is only the job's rerun trigger.
"""

from colorize.logs import snakemake_log
from colorize.manifest import read_shard_rows, source_path
from colorize.preprocess import PreprocessConfig, build_shard

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
wc = smk.wildcards
rows = read_shard_rows(smk.input.scan, wc.split, wc.shard)
paths = [
    source_path(smk.params.root, r["relpath"]) for r in rows
]  # root: a folder or {name: folder}
build_shard(
    rows,
    paths,
    smk.output.h5,
    smk.output.status,
    wc.split,
    PreprocessConfig(**smk.params.preprocess, compression=smk.params.compression),
)
