"""Snakemake script: the colorize chunks' status tables gathered into one (colorize.chunks.gather_status).

input.chunks (every chunk's status TSV) -> output.status: every photo of the folder, in path
order, the same bytes one job over the whole folder writes. Fails when not one photo could be
colorized (the tables say why).
"""

from colorize.chunks import gather_status
from colorize.logs import snakemake_log

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
rows = gather_status(smk.input.chunks, smk.output.status)
if not any(r["status"] == "ok" for r in rows):
    raise SystemExit(
        f"no image of {smk.config['colorize']['input_dir']} could be colorized; see {smk.output.status}"
    )
