"""Stage 1: copy the built-in photos, or download and safely extract a URL source."""

from colorize.acquire import fetch_source
from colorize.logs import snakemake_log

snakemake_log(snakemake)
fetch_source(
    snakemake.params.source,
    snakemake.output.raw,
    snakemake.output.log_tsv,
    sha256=snakemake.params.sha256,
    archive_limits=snakemake.params.archive,
)
