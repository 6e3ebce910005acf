# Config validation, model selection, wildcard constraints and the input functions the rules share.
import copy
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate


def check_config(config, schema_source):
    """Every schema violation in one line each, naming the key (before any job starts)."""
    import jsonschema
    import yaml

    with workflow.sourcecache.open(schema_source) as fh:
        schema = yaml.safe_load(fh)
    errors = jsonschema.Draft202012Validator(schema).iter_errors(config)
    lines = sorted(
        f"config key {'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
        for e in errors
    )
    if lines:
        raise WorkflowError("invalid configuration:\n  " + "\n  ".join(lines))


def config_layers():
    """The config files Snakemake merged into `config`, in merge order, as
    (path, content, given with --configfile): the workflow's own config/config.yaml first
    (unless --replace-workflow-config dropped it), then each --configfile."""
    from snakemake.common.configfile import load_configfile

    cli = [Path(p).absolute() for p in workflow.config_settings.configfiles]
    own = [Path(p).absolute() for p in workflow.configfiles]
    own = [p for p in own if p not in cli]
    if cli and workflow.config_settings.replace_workflow_config:
        own = []
    return [(p, load_configfile(str(p)) or {}, p in cli) for p in own + cli]


def use_whole_model_entries(config, layers):
    """Snakemake merges same-named entries of several config files key by key, so a preset's
    `seed_ae` would inherit every key the demo's `seed_ae` sets and the preset does not (its
    crop_size, say). A model is meant as one file writes it: each `models:` entry is taken
    whole from the last file that names it (`--config` values still apply on top)."""
    if not isinstance(config.get("models"), dict):
        return  # the schema check names the problem
    for _path, content, _cli in layers:
        for name, entry in (content.get("models") or {}).items():
            config["models"][name] = copy.deepcopy(entry)
    overrides = dict(workflow.config_settings.config).get("models") or {}
    update_config(config["models"], overrides)


def check_model_selection(layers):
    """A --configfile that defines models must also say which run: else config/config.yaml's
    `run_models` (the demo's models) would silently apply to a preset or a user's config.
    """
    cli_sets = "run_models" in workflow.config_settings.config or any(
        "run_models" in content for _p, content, cli in layers if cli
    )
    own_sets = any("run_models" in content for _p, content, cli in layers if not cli)
    defining = [
        (p, content) for p, content, cli in layers if cli and content.get("models")
    ]
    if own_sets and not cli_sets and defining:
        path, content = defining[-1]
        names = ", ".join(content["models"])
        raise WorkflowError(
            f"config key run_models: {path} defines models ({names}) but does not say which "
            f"of them run, so the workflow's own list would apply ([{', '.join(config['run_models'])}], "
            f"the demo's models): add `run_models: [{names}]` (or the ones to run) to {path}"
        )


def selected_models():
    """`run_models` (every entry of `models:` when absent): what this run trains, evaluates and
    reports. Each name must be defined under `models:`."""
    names = config["run_models"]
    if names is None:
        return list(config["models"])
    missing = [n for n in names if n not in config["models"]]
    if missing:
        raise WorkflowError(
            f"config key run_models: {', '.join(map(repr, missing))} not defined under models: "
            f"(defined: {', '.join(config['models'])})"
        )
    return list(names)


def check_model(name):
    """Settings of one model that would fail later, named before any job starts."""
    settings = config["models"][name]
    if name == SHIPPED_MODEL:
        raise WorkflowError(
            f"config key models.{SHIPPED_MODEL}: the name is taken by the model that ships with "
            "the project (shipped_model: true evaluates it); give your model another name"
        )
    if settings.get("crop_size", 0) > config["image_size"]:
        raise WorkflowError(
            f"config key models.{name}.crop_size: {settings['crop_size']} is larger than "
            f"image_size {config['image_size']} (crops are cut from the stored images)"
        )


SCHEMA = workflow.current_basedir.join("../schemas/config.schema.yaml")
CONFIG_LAYERS = config_layers()
use_whole_model_entries(config, CONFIG_LAYERS)
check_config(config, SCHEMA)
validate(config, schema="../schemas/config.schema.yaml")  # fills in the defaults
check_model_selection(CONFIG_LAYERS)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    split="train|val|test",
    shard=r"\d{3}",
    model=r"[A-Za-z0-9_.-]+",
    evalset=r"[A-Za-z0-9_.-]+",
    chunk=r"\d+",
    n_chunks=r"\d+",


DATASET = config["dataset"]["name"]
SHIPPED_MODEL = "shipped"  # the model name under which the shipped model is evaluated
SPLITS = ["train", "val", "test"]


def source_folders(source):
    """{name: folder} of a dataset of several local folders (`dataset.source` a mapping or a
    list; null entries, dropped by a later config file, are left out); None for one source.
    A missing folder is a config error naming its key."""
    if isinstance(source, str):
        return None
    if isinstance(source, list):
        names = [Path(folder.rstrip("/")).name for folder in source]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise WorkflowError(
                f"config key dataset.source: several folders are named {', '.join(twice)}; "
                "give them names (dataset.source as a mapping name: folder)"
            )
        source = dict(zip(names, source))
    folders = {name: folder for name, folder in source.items() if folder is not None}
    if not folders:
        raise WorkflowError(
            "config key dataset.source: every source is null (none left)"
        )
    for name, folder in folders.items():
        if is_remote(folder) or not Path(folder).is_dir():
            raise WorkflowError(
                f"config key dataset.source.{name}: folder {folder!r} does not exist "
                "(each source of several is a local folder)"
            )
    return folders


def is_remote(source):
    return source.startswith(("http://", "https://"))


def is_local_folder(source):
    return not isinstance(source, str) or (
        source != "builtin" and not is_remote(source)
    )


SOURCE = config["dataset"]["source"]
SOURCES = source_folders(SOURCE)  # {name: folder}, or None for one source
if SOURCES is not None:
    SOURCE = SOURCES
config["eval_sets"] = {k: v for k, v in config["eval_sets"].items() if v is not None}


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
if SOURCES is None and is_local_folder(SOURCE) and not Path(SOURCE).is_dir():
    raise WorkflowError(
        f"config: dataset.source {SOURCE!r} is not 'builtin', an http(s):// URL, "
        "or an existing folder"
    )
RUN_MODELS = selected_models()
for _name in RUN_MODELS:
    check_model(_name)
for _name in config["runtime"]["models"]:
    if _name not in config["models"]:
        raise WorkflowError(
            f"config key runtime.models.{_name}: no model {_name!r} under models: "
            f"(defined: {', '.join(config['models'])})"
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
    """The fetched folder; none for a local folder (read in place: `scan_stamp` is the scan's
    rerun trigger there, so its files are not Snakemake inputs)."""
    if is_local_folder(SOURCE):
        return []
    return [f"resources/{wildcards.dataset}/raw"]


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


def after_scan(wildcards):
    """No file: it makes the shard job wait for the scan checkpoint. Until the scan has run,
    Snakemake puts the scan table here as a checkpoint target (and the shard's first
    evaluation is provisional); then it evaluates the job again, with `shard_members` read
    from the new table."""
    checkpoints.scan.get(dataset=wildcards.dataset)
    return []


def shard_members(wildcards):
    """A digest of this shard's photos (path and sha256 of each, from the scan): the shard's
    rerun trigger, so that it reruns when one of its photos is added, removed or edited and
    not when another shard's is, without every photo as an input of its job."""
    from colorize.manifest import shard_digest

    scan_tsv = checkpoints.scan.get(dataset=wildcards.dataset).output.tsv
    return shard_digest(scan_tsv, wildcards.split, wildcards.shard)


def shard_files(dataset, split, ext="h5"):
    n = config["shards"][split]
    return [f"results/{dataset}/shards/{split}-{i:03d}.{ext}" for i in range(n)]


def all_shard_status(wildcards):
    return [f for s in SPLITS for f in shard_files(wildcards.dataset, s, "tsv")]


def train_shards(wildcards):
    """The train split's shard files of the dataset (the `train` input of its rules)."""
    return shard_files(wildcards.dataset, "train")


def val_shards(wildcards):
    """The val split's shard files of the dataset (the `val` input of its rules)."""
    return shard_files(wildcards.dataset, "val")


def test_shards(wildcards):
    """The test split's shard files of the dataset (the `test` input of its rules)."""
    return shard_files(wildcards.dataset, "test")


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
    return [
        os.path.join(root, r) for r in list_files(root, follow_external_links=links)
    ]


def colorized_images(wildcards):
    """The one tree every colorize chunk of a model writes its images into."""
    return f"results/{wildcards.dataset}/colorized/{wildcards.model}/images"


def colorize_excluded(wildcards):
    """What colorize never takes as input even if the input folder holds it: the colorized
    trees of every model (one exclusion for all models, so the folder is listed once).
    """
    return f"results/{wildcards.dataset}/colorized"


def colorize_chunk_tables(wildcards):
    """The status tables of the `colorize.chunks` chunks of a model's colorized folder."""
    from colorize.chunks import chunk_status_name

    n = config["colorize"]["chunks"]
    return [
        f"results/{wildcards.dataset}/colorized/{wildcards.model}/chunks/"
        + chunk_status_name(k, n)
        for k in range(1, n + 1)
    ]


_CHUNK_FINGERPRINTS = {}


def colorize_chunk_members(wildcards):
    """A fingerprint of the photos of one colorize chunk (names, sizes, modification times):
    a param, so that adding, removing or changing a photo reruns its chunk's job only. The
    folder is listed once per run of Snakemake, as the jobs list it (`chunks.folder_inputs`).
    """
    from colorize.chunks import check_chunk, chunk_fingerprints, folder_inputs

    k, n = int(wildcards.chunk), int(wildcards.n_chunks)
    check_chunk(k, n)
    key = (config["colorize"]["input_dir"], colorize_excluded(wildcards), n)
    if key not in _CHUNK_FINGERPRINTS:
        inputs = folder_inputs(key[0], exclude=[key[1]])
        _CHUNK_FINGERPRINTS[key] = chunk_fingerprints(inputs, n)
    return _CHUNK_FINGERPRINTS[key][k]


def model_settings(wildcards):
    """One `models:` entry: architecture and training settings (a change retrains only it).
    A model defined but not in `run_models` is trained when its files are asked for."""
    if wildcards.model not in config["models"]:
        raise WorkflowError(
            f"no model {wildcards.model!r} under models: (defined: "
            f"{', '.join(config['models'])}), so results/{wildcards.dataset}/models/"
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
    return [shipped_checkpoint() if source == "shipped" else source]


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
        triples.append(
            (model, TEST_SPLIT, f"results/{wildcards.dataset}/eval/{model}/summary.tsv")
        )
        for evalset in config["eval_sets"]:
            triples.append(
                (
                    model,
                    evalset,
                    f"results/{wildcards.dataset}/eval/{model}/external/{evalset}/summary.tsv",
                )
            )
    return triples


def overview_labels(wildcards):
    """[model, set] of each summary in `overview_inputs`' evaluations, in the same order."""
    return [[model, evalset] for model, evalset, _ in overview_evaluations(wildcards)]


def overview_inputs(wildcards):
    """The overview's tables: the data summary, every evaluation summary, every model's grid."""
    return {
        "summary": f"results/{wildcards.dataset}/summary.tsv",
        "evaluations": [path for _, _, path in overview_evaluations(wildcards)],
        "grids": [
            f"results/{wildcards.dataset}/eval/{model}/grid.png"
            for model in evaluated_models()
        ],
        "by_source": [
            f"results/{wildcards.dataset}/eval/{model}/by_source.tsv"
            for model in evaluated_models()
        ],
    }


def all_targets():
    targets = [
        f"results/{DATASET}/manifest.tsv",
        f"results/{DATASET}/summary.tsv",
    ]
    for model in RUN_MODELS:
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
    targets.append(f"results/{DATASET}/overview.html")
    return targets
