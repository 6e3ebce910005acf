# Config validation, wildcard constraints and the input functions the rules share.
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def check_config(config, schema_file):
    """Every schema violation in one line each, naming the key (before any job starts)."""
    import jsonschema
    import yaml

    with open(schema_file) as fh:
        schema = yaml.safe_load(fh)
    errors = jsonschema.Draft202012Validator(schema).iter_errors(config)
    lines = sorted(
        f"config key {'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
        for e in errors
    )
    if lines:
        raise WorkflowError("invalid configuration:\n  " + "\n  ".join(lines))


check_config(
    config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
)
validate(config, schema="../schemas/config.schema.yaml")  # fills in the defaults


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    split="train|val|test",
    shard=r"\d{3}",
    model=r"[A-Za-z0-9_.-]+",
    evalset=r"[A-Za-z0-9_.-]+",


DATASET = config["dataset"]["name"]
SHIPPED_MODEL = "shipped"  # the model name under which the shipped model is evaluated
SOURCE = config["dataset"]["source"]
SPLITS = ["train", "val", "test"]


def is_remote(source):
    return source.startswith(("http://", "https://"))


def is_local_folder(source):
    return source != "builtin" and not is_remote(source)


if config["split"]["val_fraction"] + config["split"]["test_fraction"] >= 1.0:
    raise WorkflowError(
        "config: split.val_fraction + split.test_fraction must be below 1 "
        f"(got {config['split']['val_fraction']} + {config['split']['test_fraction']})"
    )
if (
    config["colorize"]["input_dir"]
    and not Path(config["colorize"]["input_dir"]).is_dir()
):
    raise WorkflowError(
        f"config: colorize.input_dir {config['colorize']['input_dir']!r} is not an existing folder"
    )
if is_local_folder(SOURCE) and not Path(SOURCE).is_dir():
    raise WorkflowError(
        f"config: dataset.source {SOURCE!r} is not 'builtin', an http(s):// URL, "
        "or an existing folder"
    )
if SHIPPED_MODEL in config["models"]:
    raise WorkflowError(
        f"config key models.{SHIPPED_MODEL}: the name is taken by the model that ships with "
        "the project (shipped_model: true evaluates it); give your model another name"
    )
for _name, _model in config["models"].items():
    if _model.get("crop_size", 0) > config["image_size"]:
        raise WorkflowError(
            f"config key models.{_name}.crop_size: {_model['crop_size']} is larger than "
            f"image_size {config['image_size']} (crops are cut from the stored images)"
        )
for _name, _folder in config["eval_sets"].items():
    if not Path(_folder).is_dir():
        raise WorkflowError(
            f"config: eval_sets.{_name} {_folder!r} is not an existing folder"
        )


def raw_root(wildcards):
    """The folder that holds the dataset's raw images."""
    if is_local_folder(SOURCE):
        return SOURCE
    return f"resources/{wildcards.dataset}/raw"


def scan_inputs(wildcards):
    """A local folder's files (so adding one reruns the scan), else the fetched folder."""
    if is_local_folder(SOURCE):
        from colorize.manifest import list_files

        root = raw_root(wildcards)
        patterns = config["dataset"]["include"]
        links = config["dataset"]["follow_external_links"]
        return [os.path.join(root, r) for r in list_files(root, patterns, links)]
    return [f"resources/{wildcards.dataset}/raw"]


def shard_images(wildcards):
    """The raw files of one shard, in scan order, read from the scan: a shard's job reruns
    when its own files change (added, removed, modified), not when another shard's do.
    """
    from colorize.manifest import shard_rows

    scan_tsv = checkpoints.scan.get(dataset=wildcards.dataset).output.tsv
    root = raw_root(wildcards)
    rows = shard_rows(scan_rows(scan_tsv), wildcards.split, wildcards.shard)
    return [os.path.join(root, r["relpath"]) for r in rows]


_SCAN_CACHE = {}


def scan_rows(scan_tsv):
    """The scan's rows, parsed once per version of the file (not once per shard job)."""
    from colorize.tsv import read_tsv

    key = (scan_tsv, os.stat(scan_tsv).st_mtime_ns)
    if key not in _SCAN_CACHE:
        _SCAN_CACHE.clear()
        _SCAN_CACHE[key] = read_tsv(scan_tsv)
    return _SCAN_CACHE[key]


def shard_files(dataset, split, ext="h5"):
    n = config["shards"][split]
    return [f"results/{dataset}/shards/{split}-{i:03d}.{ext}" for i in range(n)]


def all_shard_status(wildcards):
    return [f for s in SPLITS for f in shard_files(wildcards.dataset, s, "tsv")]


def preprocess_params():
    return {
        "image_size": config["image_size"],
        "resize_policy": config["resize_policy"],
        "max_pixels": config["max_pixels"],
        "min_side": config["min_side"],
        "gray_chroma_threshold": config["gray_chroma_threshold"],
        "compression": config["shard_compression"],
    }


def eval_set_folder(wildcards):
    """The folder of one `eval_sets:` entry."""
    return config["eval_sets"][wildcards.evalset]


def eval_set_images(wildcards):
    """Every file of an evaluation folder, so that adding or changing one reruns the evaluation."""
    from colorize.manifest import list_files

    root = eval_set_folder(wildcards)
    links = config["dataset"]["follow_external_links"]
    return [
        os.path.join(root, r) for r in list_files(root, follow_external_links=links)
    ]


def model_settings(wildcards):
    """One `models:` entry: architecture and training settings (a change retrains only it)."""
    return config["models"][wildcards.model]


def shipped_checkpoint():
    """The file of the model that ships with the project (package data of `colorize`)."""
    from colorize.shipped import SHIPPED

    return str(SHIPPED)


def init_checkpoint(wildcards):
    """The checkpoint a model fine-tunes from (`init_from`), so that a new one retrains it."""
    source = config["models"].get(wildcards.model, {}).get("init_from")
    if not source:
        return []
    return [shipped_checkpoint() if source == "shipped" else source]


def evaluated_models():
    """The models trained here, and the shipped one when `shipped_model` is on."""
    return [*config["models"], *([SHIPPED_MODEL] if config["shipped_model"] else [])]


def all_targets():
    targets = [
        f"results/{DATASET}/manifest.tsv",
        f"results/{DATASET}/summary.tsv",
    ]
    for model in config["models"]:
        targets.append(f"results/{DATASET}/models/{model}/checkpoint.pt")
    for model in evaluated_models():
        targets += [
            f"results/{DATASET}/eval/{model}/summary.tsv",
            f"results/{DATASET}/eval/{model}/grid.png",
        ]
        if config["colorize"]["input_dir"]:
            targets.append(f"results/{DATASET}/colorized/{model}/status.tsv")
        for evalset in config["eval_sets"]:
            targets.append(
                f"results/{DATASET}/eval/{model}/external/{evalset}/summary.tsv"
            )
    return targets
