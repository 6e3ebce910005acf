"""The workflow's configuration, checked once before any job: which files made it, each model
taken whole from the file that defines it, one schema validation that names every bad key and
fills in the defaults, and which models run.

Plain Python over what a Snakefile can see (``config``, ``workflow.configfiles``, the
workflow's own ``configfile:``), so it is tested without Snakemake and does not depend on its
internals. ``workflow/rules/common.smk`` calls `prepare` and turns a `ConfigError` into a
``WorkflowError``.

Why the files are read again: Snakemake merges config files key by key, so a preset's
``seed_ae`` would inherit every key the demo's ``seed_ae`` sets and the preset does not (its
``crop_size``, say). A model is meant as one file writes it, so each ``models:`` entry is
taken whole from the last file that names it; ``--config`` values still apply on top. Those
values are what the merged ``config`` holds beyond the files (`overrides`), and a workflow
config dropped by ``--replace-workflow-config`` is one whose values ``config`` lacks.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import NamedTuple

import yaml

SHIPPED_MODEL = "shipped"  # the name under which the shipped model is evaluated beside a run's


class ConfigError(ValueError):
    """A configuration the workflow cannot run, in words that name the key."""


class Layer(NamedTuple):
    """One config file that went into the merged config, in merge order."""

    path: Path
    content: dict
    given: bool  # given with --configfile (else: the workflow's own `configfile:`)


def merge(base: dict, update: dict) -> dict:
    """``base`` updated by ``update`` as Snakemake merges config files (dicts key by key, any
    other value replaced), as a new dict."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def overrides(config: dict, merged: dict) -> dict:
    """What ``config`` holds that merging the files (``merged``) does not give: the
    ``--config`` values (one that repeats a file's value is indistinguishable, and harmless)."""
    out = {}
    for key, value in config.items():
        if key not in merged:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            sub = overrides(value, merged[key])
            if sub:
                out[key] = sub
        elif value != merged[key]:
            out[key] = copy.deepcopy(value)
    return out


def _has_every_leaf(config: dict, content: dict) -> bool:
    for key, value in content.items():
        if key not in config:
            return False
        if isinstance(value, dict) and value and isinstance(config[key], dict):
            if not _has_every_leaf(config[key], value):
                return False
    return True


def _read(path: Path) -> dict:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"config file {path}: cannot be read ({err})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path}: holds a {type(content).__name__}, not a mapping")
    return content


def config_layers(configfiles, workflow_configfile, config: dict) -> list[Layer]:
    """The files merged into ``config``, in merge order: the workflow's own config file first
    (unless ``--replace-workflow-config`` dropped it), then each ``--configfile`` in order.

    ``configfiles`` is ``workflow.configfiles`` (the ``--configfile`` files, then the
    workflow's own when it was loaded); ``workflow_configfile`` the path its ``configfile:``
    names.
    """
    own_path = Path(workflow_configfile).absolute() if workflow_configfile else None
    paths = [Path(p).absolute() for p in configfiles]
    given = [Layer(p, _read(p), True) for p in paths if p != own_path]
    own = [Layer(p, _read(p), False) for p in dict.fromkeys(paths) if p == own_path]
    if own and given and not _has_every_leaf(config, own[0].content):
        own = []  # --replace-workflow-config: config holds none of its own file's values
    return own + given


def merged(layers: list[Layer]) -> dict:
    """The files of ``layers`` merged as Snakemake merges them, without ``--config``."""
    out: dict = {}
    for layer in layers:
        out = merge(out, layer.content)
    return out


def use_whole_model_entries(config: dict, layers: list[Layer], cli: dict) -> None:
    """Each ``models:`` entry as the last file that names it writes it, then ``--config``'s
    (``cli``) model values on top."""
    if not isinstance(config.get("models"), dict):
        return  # the schema check names the problem
    for layer in layers:
        for name, entry in (layer.content.get("models") or {}).items():
            config["models"][name] = copy.deepcopy(entry)
    config["models"] = merge(config["models"], cli.get("models") or {})


def check_model_selection(config: dict, layers: list[Layer], cli: dict) -> None:
    """A --configfile that defines models must also say which run: else the workflow config's
    ``run_models`` (the demo's models) would silently apply to a preset or a user's config."""
    cli_sets = "run_models" in cli or any(
        "run_models" in lay.content for lay in layers if lay.given
    )
    own_sets = any("run_models" in lay.content for lay in layers if not lay.given)
    defining = [lay for lay in layers if lay.given and lay.content.get("models")]
    if own_sets and not cli_sets and defining:
        path, names = defining[-1].path, ", ".join(defining[-1].content["models"])
        raise ConfigError(
            f"config key run_models: {path} defines models ({names}) but does not say which "
            f"of them run, so the workflow's own list would apply "
            f"([{', '.join(config['run_models'])}], the demo's models): add "
            f"`run_models: [{names}]` (or the ones to run) to {path}"
        )


def load_schema(path) -> dict:
    """The JSON schema (YAML) at ``path``."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def validate(config: dict, schema: dict) -> None:
    """Check ``config`` against the JSON schema once: every violation in one line each, naming
    the key, and every default the schema gives filled in where a key is absent."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict) and "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    validator = jsonschema.validators.extend(base, {"properties": properties_with_defaults})
    errors = validator(schema).iter_errors(config)
    lines = sorted(
        f"config key {'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
        for e in errors
    )
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def selected_models(config: dict) -> list[str]:
    """``run_models`` (every entry of ``models:`` when it is null): what this run trains,
    evaluates and reports. Each name must be defined under ``models:``."""
    names = config["run_models"]
    if names is None:
        return list(config["models"])
    missing = [n for n in names if n not in config["models"]]
    if missing:
        raise ConfigError(
            f"config key run_models: {', '.join(map(repr, missing))} not defined under models: "
            f"(defined: {', '.join(config['models'])})"
        )
    return list(names)


def check_model(config: dict, name: str) -> None:
    """Settings of one model that would fail later, named before any job starts."""
    settings = config["models"][name]
    if name == SHIPPED_MODEL:
        raise ConfigError(
            f"config key models.{SHIPPED_MODEL}: the name is taken by the model that ships with "
            "the project (shipped_model: true evaluates it); give your model another name"
        )
    if settings.get("crop_size", 0) > config["image_size"]:
        raise ConfigError(
            f"config key models.{name}.crop_size: {settings['crop_size']} is larger than "
            f"image_size {config['image_size']} (crops are cut from the stored images)"
        )


def is_remote(source: str) -> bool:
    """Whether ``source`` is downloaded (an http(s):// URL)."""
    return source.startswith(("http://", "https://"))


def is_local_folder(source) -> bool:
    """A folder read in place (one, or several as a mapping or list), not fetched."""
    return not isinstance(source, str) or (source != "builtin" and not is_remote(source))


def source_folders(source) -> dict[str, str] | None:
    """{name: folder} of a dataset of several local folders (``dataset.source`` a mapping, or
    a list named by each folder's last component; null entries, dropped by a later config
    file, are left out); None for one source. A missing folder is an error naming its key."""
    if isinstance(source, str):
        return None
    if isinstance(source, list):
        names = [Path(folder.rstrip("/")).name for folder in source]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(
                f"config key dataset.source: several folders are named {', '.join(twice)}; "
                "give them names (dataset.source as a mapping name: folder)"
            )
        source = dict(zip(names, source))
    folders = {name: folder for name, folder in source.items() if folder is not None}
    if not folders:
        raise ConfigError("config key dataset.source: every source is null (none left)")
    for name, folder in folders.items():
        if is_remote(folder) or not Path(folder).is_dir():
            raise ConfigError(
                f"config key dataset.source.{name}: folder {folder!r} does not exist "
                "(each source of several is a local folder)"
            )
    return folders


def check_settings(config: dict, run_models: list[str]) -> None:
    """Values the schema cannot judge alone: fractions that add up, folders that exist, names
    that refer to defined models."""
    split = config["split"]
    if split["val_fraction"] + split["test_fraction"] >= 1.0:
        raise ConfigError(
            "config: split.val_fraction + split.test_fraction must be below 1 "
            f"(got {split['val_fraction']} + {split['test_fraction']})"
        )
    input_dir = config["colorize"]["input_dir"]
    if input_dir and not Path(input_dir).is_dir():
        raise ConfigError(f"config: colorize.input_dir {input_dir!r} is not an existing folder")
    source = config["dataset"]["source"]
    if source_folders(source) is None and is_local_folder(source) and not Path(source).is_dir():
        raise ConfigError(
            f"config: dataset.source {source!r} is not 'builtin', an http(s):// URL, "
            "or an existing folder"
        )
    for name in run_models:
        check_model(config, name)
    for name in config["runtime"]["models"]:
        if name not in config["models"]:
            raise ConfigError(
                f"config key runtime.models.{name}: no model {name!r} under models: "
                f"(defined: {', '.join(config['models'])})"
            )
    for name, folder in config["eval_sets"].items():
        if not Path(folder).is_dir():
            raise ConfigError(f"config: eval_sets.{name} {folder!r} is not an existing folder")


def prepare(config: dict, configfiles, workflow_configfile, schema_path) -> list[str]:
    """Everything above, in order, on the merged ``config`` (changed in place: whole model
    entries, defaults): returns the models this run trains."""
    layers = config_layers(configfiles, workflow_configfile, config)
    cli = overrides(config, merged(layers))
    use_whole_model_entries(config, layers, cli)
    validate(config, load_schema(schema_path))
    # a later file drops an eval set by setting it to null (mappings merge key by key)
    config["eval_sets"] = {k: v for k, v in config["eval_sets"].items() if v is not None}
    check_model_selection(config, layers, cli)
    run_models = selected_models(config)
    check_settings(config, run_models)
    return run_models


# The variable envs/colorize.yaml's pip line reads (`-e ${COLORIZE_SOURCE}`): where the conda
# environment of `snakemake --sdm conda` installs the colorize package from.
PACKAGE_SOURCE_VARIABLE = "COLORIZE_SOURCE"


def package_source(rules_dir, environ: dict, uses_conda: bool) -> str | None:
    """Where the conda environment installs colorize from, set in ``environ`` for the jobs (and
    for the ``conda env create`` Snakemake runs): a value already there, else the source folder
    of the workflow whose rules are in ``rules_dir`` (``workflow/rules`` of a clone, or of a
    copy another project uses as a module), found by its ``pyproject.toml`` and
    ``src/colorize/``. None when neither exists (a workflow read from a URL) and no conda
    environment is used; with one, a ``ConfigError`` that says what to set."""
    if environ.get(PACKAGE_SOURCE_VARIABLE):
        return environ[PACKAGE_SOURCE_VARIABLE]
    root = Path(str(rules_dir)).parent.parent
    if (root / "pyproject.toml").is_file() and (root / "src/colorize/__init__.py").is_file():
        environ[PACKAGE_SOURCE_VARIABLE] = str(root)
        return str(root)
    if uses_conda:
        raise ConfigError(
            f"--sdm conda: envs/colorize.yaml installs the colorize package from "
            f"${PACKAGE_SOURCE_VARIABLE}, and this workflow was not read from a local folder "
            f"that holds it ({rules_dir}): set {PACKAGE_SOURCE_VARIABLE} to a clone of the "
            f"same version (the folder with pyproject.toml)"
        )
    return None
