"""Snakemake script: the report's landing page (colorize.overview).

input.summary (the data stage's summary.tsv), input.evaluations (summary.tsv of each model on
the test split and each eval set, in the order of params.evaluations: [model, set] pairs),
input.grids and input.by_source (one per model of params.models) -> output.html.
"""

from colorize.logs import snakemake_log
from colorize.overview import write_overview

smk = snakemake  # the object Snakemake injects into a script
snakemake_log(smk)
evaluations = [
    (model, evalset, path)
    for (model, evalset), path in zip(smk.params.evaluations, smk.input.evaluations)
]
write_overview(
    smk.output.html,
    smk.input.summary,
    evaluations,
    dict(zip(smk.params.models, smk.input.grids)),
    dict(zip(smk.params.models, smk.input.by_source)),
)
