"""Stage 1: copy the built-in photos, or download and safely extract a URL source."""

from colorize.acquire import fetch_source
from colorize.logs import snakemake_log

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
fetch_source(
    smk.params.source,
    smk.output.raw,
    smk.output.log_tsv,
    sha256=smk.params.sha256,
    archive_limits=smk.params.archive,
)
