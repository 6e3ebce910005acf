"""Stage 1 manifest: hash and header-check every file; assign split and shard.

params.stamp (a digest of a local folder's listing) is only the job's rerun trigger.
"""

from colorize.logs import snakemake_log
from colorize.manifest import SCAN_COLUMNS, scan
from colorize.tsv import write_tsv

snakemake_log(snakemake)
split = snakemake.params.split
rows = scan(
    snakemake.params.root,
    val_fraction=split["val_fraction"],
    test_fraction=split["test_fraction"],
    seed=split["seed"],
    shards=snakemake.params.shards,
    max_pixels=snakemake.params.max_pixels,
    min_side=snakemake.params.min_side,
    threads=snakemake.threads,
    include=snakemake.params.include,
    follow_external_links=snakemake.params.follow_external_links,
)
write_tsv(rows, snakemake.output.tsv, SCAN_COLUMNS)
