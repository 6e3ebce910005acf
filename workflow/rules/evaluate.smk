# Stage 5-6: batch inference, evaluation against the gray baseline, grids and colorized photos.


rule evaluate:
    """Per-image metrics of the model and of the gray baseline (ab = 0) on the test split."""
    input:
        checkpoint=f"{RESULTS}/models/{{model}}/best.pt",
        test=split_shards("test"),
    output:
        per_image=report(
            f"{RESULTS}/eval/{{model}}/per_image.tsv",
            caption="../report/per_image.rst",
            category="4. Evaluation",
            subcategory="{model}",
        ),
        summary=report(
            f"{RESULTS}/eval/{{model}}/summary.tsv",
            caption="../report/eval_summary.rst",
            category="4. Evaluation",
            subcategory="{model}",
        ),
        by_source=f"{RESULTS}/eval/{{model}}/by_source.tsv",
    log:
        f"{RESULTS}/logs/evaluate/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}.tsv"
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
        checkpoint=f"{RESULTS}/models/{{model}}/best.pt",
        test=split_shards("test"),
    output:
        png=report(
            f"{RESULTS}/eval/{{model}}/grid.png",
            caption="../report/grid.rst",
            category="4. Evaluation",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/grid/{{model}}.log",
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
        checkpoint=f"{RESULTS}/models/{{model}}/best.pt",
    output:
        status=f"{RESULTS}/colorized/{{model}}/chunks/status.chunk-{{chunk}}-of-{{n_chunks}}.tsv",
    log:
        f"{RESULTS}/logs/colorize/{{model}}/chunk-{{chunk}}-of-{{n_chunks}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/colorize/{{model}}/chunk-{{chunk}}-of-{{n_chunks}}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        **ONE_GPU_JOB,
        runtime=240,
    params:
        input_dir=config["colorize"]["input_dir"],
        follow_links=config["colorize"]["follow_external_links"],
        images=colorized_images,
        excluded=colorize_excluded,
        journal=f"{RESULTS}/colorized/{{model}}/chunks/resume/status.chunk-{{chunk}}-of-{{n_chunks}}.tsv",
        members=colorize_chunk_fingerprint,
    script:
        "../scripts/colorize_folder.py"


rule colorize_status:
    """The chunks' status tables gathered into one: every photo of the folder, in path order."""
    input:
        chunks=colorize_chunk_tables,
    output:
        status=f"{RESULTS}/colorized/{{model}}/status.tsv",
    log:
        f"{RESULTS}/logs/colorize/{{model}}/status.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        runtime=10,
    script:
        "../scripts/colorize_status.py"
