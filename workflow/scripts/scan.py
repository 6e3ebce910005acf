"""Stage 1 manifest: hash and header-check every file; assign split and shard.

params.stamp (a digest of a local folder's listing) is only the job's rerun trigger.
"""

from colorize.logs import snakemake_log
from colorize.manifest import SCAN_COLUMNS, scan
from colorize.tsv import write_tsv

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
split = smk.params.split
rows = scan(
    smk.params.root,
    val_fraction=split["val_fraction"],
    test_fraction=split["test_fraction"],
    seed=split["seed"],
    shards=smk.params.shards,
    max_pixels=smk.params.max_pixels,
    min_side=smk.params.min_side,
    threads=smk.threads,
    include=smk.params.include,
    follow_external_links=smk.params.follow_external_links,
)
write_tsv(rows, smk.output.tsv, SCAN_COLUMNS)
