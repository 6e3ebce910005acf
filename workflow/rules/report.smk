# The report's landing page: the answer first (snakemake --report shows it on its first page).


rule overview:
    """Data counts, every model vs gray on the test split and each eval set, the best grid."""
    input:
        unpack(overview_inputs),
    output:
        html=report(
            f"{RESULTS}/overview.html",
            caption="../report/overview.rst",
            category="1. Overview",
        ),
    log:
        f"{RESULTS}/logs/overview.log",
    conda:
        CONDA_ENV
    params:
        evaluations=overview_labels,
        models=evaluated_models(),
    script:
        "../scripts/overview.py"
