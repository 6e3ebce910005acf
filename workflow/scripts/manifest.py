"""The final manifest (every file, its status) and the per-split / per-reason summary."""

import logging

from colorize.logs import snakemake_log
from colorize.manifest import merge, summarize
from colorize.tsv import read_tsv, write_tsv

snakemake_log(snakemake)
rows = merge(read_tsv(snakemake.input.scan), snakemake.input.status)
write_tsv(rows, snakemake.output.manifest, columns=list(rows[0]))
summary = summarize(rows)
write_tsv(summary, snakemake.output.summary, columns=["kind", "name", "count"])
for r in summary:
    logging.getLogger("colorize.manifest").info("%-8s %-40s %d", r["kind"], r["name"], r["count"])
