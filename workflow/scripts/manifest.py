"""The final manifest (every file, its status) and the per-split / per-reason summary."""

import logging

from colorize.logs import snakemake_log
from colorize.manifest import merge, summarize
from colorize.tsv import read_tsv, write_tsv

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
rows = merge(read_tsv(smk.input.scan), smk.input.status)
write_tsv(rows, smk.output.manifest, columns=list(rows[0]))
summary = summarize(rows)
write_tsv(summary, smk.output.summary, columns=["kind", "name", "count"])
for r in summary:
    logging.getLogger("colorize.manifest").info("%-8s %-40s %d", r["kind"], r["name"], r["count"])
