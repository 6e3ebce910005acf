# Stage 5-6: batch inference, evaluation against the gray baseline, grids and colorized photos.


rule evaluate:
    """Per-image metrics of the model and of the gray baseline (ab = 0) on the test split."""
    input:
        checkpoint="results/{dataset}/models/{model}/best.pt",
        test=split_shards("test"),
    output:
        per_image=report(
            "results/{dataset}/eval/{model}/per_image.tsv",
            caption="../report/per_image.rst",
            category="4. Evaluation",
            subcategory="{model}",
        ),
        summary=report(
            "results/{dataset}/eval/{model}/summary.tsv",
            caption="../report/eval_summary.rst",
            category="4. Evaluation",
            subcategory="{model}",
        ),
        by_source="results/{dataset}/eval/{model}/by_source.tsv",
    log:
        "results/{dataset}/logs/evaluate/{model}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate/{model}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        **ONE_GPU_JOB,
        runtime=120,
    params:
        single_source=single_source(),
    script:
        "../scripts/evaluate.py"


rule grid:
    """Grayscale | Predicted | Ground truth on test images: what a person looks at first."""
    input:
        checkpoint="results/{dataset}/models/{model}/best.pt",
        test=split_shards("test"),
    output:
        png=report(
            "results/{dataset}/eval/{model}/grid.png",
            caption="../report/grid.rst",
            category="4. Evaluation",
            subcategory="{model}",
        ),
    log:
        "results/{dataset}/logs/grid/{model}.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        n_rows=config["report"]["grid_rows"],
    script:
        "../scripts/grid.py"


rule colorize_folder:
    """Colorize one chunk of the configured folder at full resolution, keeping names. All chunks
    write into the one tree images/, which is therefore no job's declared output (directory()
    outputs may not overlap): each job declares its chunk's status table, and reruns when its
    own photos change (params.members), not when another chunk's do."""
    input:
        checkpoint="results/{dataset}/models/{model}/best.pt",
    output:
        status="results/{dataset}/colorized/{model}/chunks/status.chunk-{chunk}-of-{n_chunks}.tsv",
    log:
        "results/{dataset}/logs/colorize/{model}/chunk-{chunk}-of-{n_chunks}.log",
    benchmark:
        "results/{dataset}/benchmarks/colorize/{model}/chunk-{chunk}-of-{n_chunks}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        **ONE_GPU_JOB,
        runtime=240,
    params:
        input_dir=config["colorize"]["input_dir"],
        images=colorized_images,
        excluded=colorize_excluded,
        journal="results/{dataset}/colorized/{model}/chunks/resume/status.chunk-{chunk}-of-{n_chunks}.tsv",
        members=colorize_chunk_fingerprint,
    script:
        "../scripts/colorize_folder.py"


rule colorize_status:
    """The chunks' status tables gathered into one: every photo of the folder, in path order."""
    input:
        chunks=colorize_chunk_tables,
    output:
        status="results/{dataset}/colorized/{model}/status.tsv",
    log:
        "results/{dataset}/logs/colorize/{model}/status.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        runtime=10,
    script:
        "../scripts/colorize_status.py"
