# Stage 4: train one model per `run_models` entry (the {model} wildcard), on a GPU when present.


rule train:
    """Train one model on the train shards, validating on the val shards; resumable."""
    input:
        train=split_shards("train"),
        val=split_shards("val"),
        init=init_checkpoint,
    output:
        checkpoint=f"{RESULTS}/models/{{model}}/checkpoint.pt",
        best=f"{RESULTS}/models/{{model}}/best.pt",
        history=f"{RESULTS}/models/{{model}}/history.tsv",
        curve=report(
            f"{RESULTS}/models/{{model}}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="3. Training",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}.tsv"
    wildcard_constraints:
        model=rf"(?!{SHIPPED_MODEL}(?![A-Za-z0-9_.-]))[A-Za-z0-9_.-]+",
    conda:
        CONDA_ENV
    threads: per_gpu(4)
    resources:
        # Portable resources; the site-specific ones (partition, account, GPU model) are set
        # in profiles/slurm/. gpu: the model's `gpus:` (1 when absent); with N > 1 the script
        # starts torchrun, one launcher for N processes, so this stays ONE SLURM task
        # (never set `tasks`: the plugin turns it into --ntasks-per-gpu, a task per GPU).
        # Locally profiles/default allows gpu: 1 at a time (CPU-only machines run it on the
        # CPU); --resources gpu=N for N GPUs.
        gpu=model_gpus,
        cpus_per_gpu=4,
        mem_mb=per_gpu(16000),
        runtime=720,
    params:
        model=model_settings,
        dataset=DATASET,
    script:
        "../scripts/train.py"


rule shipped_model:
    """The model that ships with the project, evaluated beside the models trained here."""
    input:
        shipped_checkpoint(),
    output:
        best=f"{RESULTS}/models/{SHIPPED_MODEL}/best.pt",
    log:
        f"{RESULTS}/logs/shipped_model.log",
    conda:
        CONDA_ENV
    shell:
        "cp {input:q} {output.best:q} 2> {log:q}"
