# Evaluation on photo folders outside the training data (config `eval_sets:`), model vs gray.


rule evaluate_external:
    """Per-image metrics of the model and the gray baseline on one `eval_sets:` folder."""
    input:
        checkpoint=f"{RESULTS}/models/{{model}}/best.pt",
        images=eval_set_images,
    output:
        per_image=report(
            f"{RESULTS}/eval/{{model}}/external/{{evalset}}/per_image.tsv",
            caption="../report/external_per_image.rst",
            category="5. Evaluation on other photos",
            subcategory="{evalset}",
        ),
        summary=report(
            f"{RESULTS}/eval/{{model}}/external/{{evalset}}/summary.tsv",
            caption="../report/external_summary.rst",
            category="5. Evaluation on other photos",
            subcategory="{evalset}",
        ),
        excluded=f"{RESULTS}/eval/{{model}}/external/{{evalset}}/excluded.tsv",
    log:
        f"{RESULTS}/logs/evaluate_external/{{model}}/{{evalset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_external/{{model}}/{{evalset}}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        **ONE_GPU_JOB,
        runtime=120,
    params:
        folder=eval_set_folder,
        preprocess=preprocess_params(),
        follow_external_links=config["dataset"]["follow_external_links"],
    script:
        "../scripts/evaluate_external.py"
