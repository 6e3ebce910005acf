# The checked configuration (colorize.workflow_config), wildcard constraints and the input
# functions the rules share.
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

from colorize.workflow_config import (
    SHIPPED_MODEL,
    ConfigError,
    check_model as check_model_settings,
    is_local_folder,
    package_source,
    prepare,
    source_folders,
)

# The Snakefile's `configfile:` (written there as a literal, where the workflow catalog looks).
WORKFLOW_CONFIGFILE = "config/config.yaml"

try:
    RUN_MODELS = prepare(
        config,
        workflow.configfiles,
        WORKFLOW_CONFIGFILE,
        workflow.source_path("../schemas/config.schema.yaml"),
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None


def check_model(name):
    """`workflow_config.check_model` for a model asked for by its files."""
    try:
        check_model_settings(config, name)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


wildcard_constraints:
    split="train|val|test",
    shard=r"\d{3}",
    model=r"[A-Za-z0-9_.-]+",
    evalset=r"[A-Za-z0-9_.-]+",
    chunk=r"\d+",
    n_chunks=r"\d+",


DATASET = config["dataset"]["name"]
# Every path of the run starts here: one dataset per run, named by dataset.name.
RESULTS = f"results/{DATASET}"
RESOURCES = f"resources/{DATASET}"  # what the fetch rule downloads
# Every rule runs in the one environment (relative to workflow/rules/, where the rules are). It
# installs colorize from $COLORIZE_SOURCE: this workflow's own source folder, also when another
# project uses it as a module (set here, for the jobs and for `conda env create`).
CONDA_ENV = "../../envs/colorize.yaml"
try:
    package_source(
        str(workflow.current_basedir),
        os.environ,
        "conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method},
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
# What a job that runs a model on one GPU (or the CPU) asks for, beside its runtime.
ONE_GPU_JOB = {"gpu": 1, "mem_mb": 8000}
SPLITS = ["train", "val", "test"]
SOURCE = config["dataset"]["source"]
SOURCES = source_folders(SOURCE)  # {name: folder}, or None for one source (checked by prepare)
if SOURCES is not None:
    SOURCE = SOURCES


def raw_root(wildcards):
    """The folder that holds the dataset's raw images."""
    if is_local_folder(SOURCE):
        return SOURCE
    return f"{RESOURCES}/raw"


def scan_inputs(wildcards):
    """The fetched folder; none for a local folder (read in place: `scan_stamp` is the scan's
    rerun trigger there, so its files are not Snakemake inputs)."""
    if is_local_folder(SOURCE):
        return []
    return [f"{RESOURCES}/raw"]


def scan_stamp(wildcards):
    """A local folder's listing as one digest (path, size, mtime of every file): adding,
    removing or editing a photo changes it and reruns the scan. Empty for a fetched folder
    (the fetch rule's output is the scan's input there)."""
    if not is_local_folder(SOURCE):
        return ""
    from colorize.manifest import folder_stamp

    folders = SOURCES or {"": raw_root(wildcards)}
    return " ".join(
        f"{name}:"
        + folder_stamp(
            folder,
            config["dataset"]["include"],
            config["dataset"]["follow_external_links"],
        )
        for name, folder in folders.items()
    )


def wait_for_scan(wildcards):
    """No file: it makes the shard job wait for the scan checkpoint. Until the scan has run,
    Snakemake puts the scan table here as a checkpoint target (and the shard's first
    evaluation is provisional); then it evaluates the job again, with `shard_photos_digest` read
    from the new table."""
    checkpoints.scan.get()
    return []


def shard_photos_digest(wildcards):
    """A digest of this shard's photos (path and sha256 of each, from the scan): the shard's
    rerun trigger, so that it reruns when one of its photos is added, removed or edited and
    not when another shard's is, without every photo as an input of its job."""
    from colorize.manifest import shard_digest

    scan_tsv = checkpoints.scan.get().output.tsv
    return shard_digest(scan_tsv, wildcards.split, wildcards.shard)


def shard_files(split, ext="h5"):
    n = config["shards"][split]
    return [f"{RESULTS}/shards/{split}-{i:03d}.{ext}" for i in range(n)]


def all_shard_status(wildcards):
    return [f for s in SPLITS for f in shard_files(s, "tsv")]


def split_shards(split):
    """The input function of one split's shard files (the `train`, `val` or `test` input)."""

    def shards(wildcards):
        return shard_files(split)

    shards.__name__ = f"{split}_shards"
    return shards


def preprocess_params():
    """How a photo becomes a stored image (`PreprocessConfig`): one definition for the shards
    and for the `eval_sets:` folders, so both are prepared alike. (How the shards are stored,
    `shard_compression`, is the shard rule's own param: it changes no evaluation.)"""
    return {
        "image_size": config["image_size"],
        "resize_policy": config["resize_policy"],
        "max_pixels": config["max_pixels"],
        "min_side": config["min_side"],
        "gray_chroma_threshold": config["gray_chroma_threshold"],
    }


def single_source():
    """The source name of every test image of a one-folder dataset (the dataset's name); None
    for several sources, whose images are named <source>/<path>."""
    return DATASET if SOURCES is None else None


def eval_set_folder(wildcards):
    """The folder of one `eval_sets:` entry."""
    return config["eval_sets"][wildcards.evalset]


def eval_set_images(wildcards):
    """Every file of an evaluation folder, so that adding or changing one reruns the evaluation."""
    from colorize.manifest import list_files

    root = eval_set_folder(wildcards)
    links = config["dataset"]["follow_external_links"]
    return [os.path.join(root, r) for r in list_files(root, follow_external_links=links)]


def colorized_images(wildcards):
    """The one tree every colorize chunk of a model writes its images into."""
    return f"{RESULTS}/colorized/{wildcards.model}/images"


def colorize_excluded(wildcards):
    """What colorize never takes as input even if the input folder holds it: the colorized
    trees of every model (one exclusion for all models, so the folder is listed once).
    """
    return f"{RESULTS}/colorized"


def colorize_chunk_tables(wildcards):
    """The status tables of the `colorize.chunks` chunks of a model's colorized folder."""
    from colorize.chunks import chunk_status_name

    n = config["colorize"]["chunks"]
    return [
        f"{RESULTS}/colorized/{wildcards.model}/chunks/{chunk_status_name(k, n)}"
        for k in range(1, n + 1)
    ]


_CHUNK_FINGERPRINTS = {}


def colorize_chunk_fingerprint(wildcards):
    """A fingerprint of the photos of one colorize chunk (names, sizes, modification times):
    a param, so that adding, removing or changing a photo reruns its chunk's job only. The
    folder is listed once per run of Snakemake, as the jobs list it (`chunks.folder_inputs`).
    """
    from colorize.chunks import check_chunk, chunk_fingerprints, folder_inputs

    k, n = int(wildcards.chunk), int(wildcards.n_chunks)
    check_chunk(k, n)
    links = config["colorize"]["follow_external_links"]
    key = (config["colorize"]["input_dir"], colorize_excluded(wildcards), links, n)
    if key not in _CHUNK_FINGERPRINTS:
        inputs = folder_inputs(key[0], exclude=[key[1]], follow_links=links)
        _CHUNK_FINGERPRINTS[key] = chunk_fingerprints(inputs, n)
    return _CHUNK_FINGERPRINTS[key][k]


def model_settings(wildcards):
    """One `models:` entry: architecture and training settings (a change retrains only it).
    A model defined but not in `run_models` is trained when its files are asked for."""
    if wildcards.model not in config["models"]:
        raise WorkflowError(
            f"no model {wildcards.model!r} under models: (defined: "
            f"{', '.join(config['models'])}), so {RESULTS}/models/"
            f"{wildcards.model}/ cannot be trained"
        )
    check_model(wildcards.model)
    return config["models"][wildcards.model]


def model_gpus(wildcards):
    """GPUs (training processes) a model trains on: its `gpus:` setting, 1 when absent."""
    return config["models"].get(wildcards.model, {}).get("gpus", 1)


def per_gpu(amount):
    """A training resource that grows with the model's GPUs: `amount` per GPU (threads, memory)."""
    return lambda wildcards: amount * model_gpus(wildcards)


def shipped_checkpoint():
    """The file of the model that ships with the project (package data of `colorize`)."""
    from colorize.shipped import SHIPPED

    return str(SHIPPED)


def init_checkpoint(wildcards):
    """The checkpoint a model fine-tunes from (`init_from`), so that a new one retrains it."""
    source = config["models"].get(wildcards.model, {}).get("init_from")
    if not source:
        return []
    return [shipped_checkpoint() if source == SHIPPED_MODEL else source]


def evaluated_models():
    """The models this run trains (`run_models`), and the shipped one when `shipped_model` is on."""
    return [*RUN_MODELS, *([SHIPPED_MODEL] if config["shipped_model"] else [])]


def overview_evaluations(wildcards):
    """(model, set, summary.tsv) of every evaluated model on the test split and each eval set,
    in the order the overview lists them (the rule's params; the files are its inputs).
    """
    from colorize.overview import TEST_SPLIT

    triples = []
    for model in evaluated_models():
        triples.append((model, TEST_SPLIT, f"{RESULTS}/eval/{model}/summary.tsv"))
        for evalset in config["eval_sets"]:
            triples.append(
                (
                    model,
                    evalset,
                    f"{RESULTS}/eval/{model}/external/{evalset}/summary.tsv",
                )
            )
    return triples


def overview_labels(wildcards):
    """[model, set] of each summary in `overview_inputs`' evaluations, in the same order."""
    return [[model, evalset] for model, evalset, _ in overview_evaluations(wildcards)]


def overview_inputs(wildcards):
    """The overview's tables: the data summary, every evaluation summary, every model's grid."""
    return {
        "summary": f"{RESULTS}/summary.tsv",
        "evaluations": [path for _, _, path in overview_evaluations(wildcards)],
        "grids": [f"{RESULTS}/eval/{model}/grid.png" for model in evaluated_models()],
        "by_source": [f"{RESULTS}/eval/{model}/by_source.tsv" for model in evaluated_models()],
    }


def all_targets():
    targets = [
        f"{RESULTS}/manifest.tsv",
        f"{RESULTS}/summary.tsv",
    ]
    for model in RUN_MODELS:
        targets.append(f"{RESULTS}/models/{model}/checkpoint.pt")
    for model in evaluated_models():
        targets += [
            f"{RESULTS}/eval/{model}/summary.tsv",
            f"{RESULTS}/eval/{model}/grid.png",
        ]
        if config["colorize"]["input_dir"]:
            targets.append(f"{RESULTS}/colorized/{model}/status.tsv")
        for evalset in config["eval_sets"]:
            targets.append(f"{RESULTS}/eval/{model}/external/{evalset}/summary.tsv")
    targets.append(f"{RESULTS}/overview.html")
    return targets
