"""Stages 2-3 for one shard: decode, resize, Lab, HDF5 (colorize.preprocess.build_shard).

input.scan; params.root (the raw folder), params.preprocess (PreprocessConfig fields),
params.compression -> output.h5 (the shard), output.status (one row per input: ok or the reason).
params.members (a digest of the shard's photos) is only the job's rerun trigger.
"""

from colorize.logs import snakemake_log
from colorize.manifest import read_shard_rows, source_path
from colorize.preprocess import PreprocessConfig, build_shard

snakemake_log(snakemake)
wc = snakemake.wildcards
rows = read_shard_rows(snakemake.input.scan, wc.split, wc.shard)
paths = [
    source_path(snakemake.params.root, r["relpath"]) for r in rows
]  # root: a folder or {name: folder}
build_shard(
    rows,
    paths,
    snakemake.output.h5,
    snakemake.output.status,
    wc.split,
    PreprocessConfig(**snakemake.params.preprocess, compression=snakemake.params.compression),
)
