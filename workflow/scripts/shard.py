"""Stages 2-3 for one shard: decode, resize, Lab, HDF5 (colorize.preprocess.build_shard).

input.scan, input.images; params.preprocess (PreprocessConfig fields), params.compression
-> output.h5 (the shard), output.status (one row per input: ok or the reason).
"""

from colorize.logs import snakemake_log
from colorize.manifest import shard_rows
from colorize.tsv import read_tsv
from colorize.preprocess import PreprocessConfig, build_shard

snakemake_log(snakemake)
wc = snakemake.wildcards
rows = shard_rows(read_tsv(snakemake.input.scan), wc.split, wc.shard)
build_shard(rows, snakemake.input.images, snakemake.output.h5, snakemake.output.status, wc.split,
            PreprocessConfig(**snakemake.params.preprocess, compression=snakemake.params.compression))
