"""colorize.workflow_config: the checks common.smk runs once, on plain dicts and real files
(the Snakemake runs of test_presets.py and test_workflow_data.py cover the same through the
workflow)."""

from __future__ import annotations

import pytest
import yaml

from colorize.workflow_config import (
    ConfigError,
    check_model_selection,
    check_settings,
    config_layers,
    merge,
    merged,
    overrides,
    prepare,
    selected_models,
    use_whole_model_entries,
    validate,
)
from conftest import REPO

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DEMO = {
    "dataset": {"name": "builtin", "source": "builtin"},
    "image_size": 256,
    "run_models": ["seed_ae", "unet"],
    "models": {
        "seed_ae": {"arch": "seed_ae", "crop_size": 128},
        "unet": {"arch": "unet", "crop_size": 128},
    },
}


def write(path, content):
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def snakemake_merge(*files_and_cli):
    """What Snakemake hands the Snakefile: every file merged key by key, --config last."""
    out = {}
    for part in files_and_cli:
        out = merge(out, part)
    return out


def test_merge_is_key_by_key_for_dicts_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    out = merge(base, {"a": {"y": [3]}, "b": {"c": 2}})
    assert out == {"a": {"x": 1, "y": [3]}, "b": {"c": 2}}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # a new dict


def test_overrides_are_what_the_files_do_not_give():
    files = {"a": {"x": 1, "y": 2}, "l": [1]}
    config = {"a": {"x": 1, "y": 5, "z": 0}, "l": [1], "new": "v"}
    assert overrides(config, files) == {"a": {"y": 5, "z": 0}, "new": "v"}
    assert overrides(files, files) == {}


def test_layers_put_the_workflow_config_first_and_drop_it_when_replaced(tmp_path):
    own = write(tmp_path / "config.yaml", DEMO)
    preset = write(
        tmp_path / "preset.yaml",
        {"image_size": 64, "run_models": ["small"], "models": {"small": {"arch": "unet"}}},
    )
    # workflow.configfiles lists the --configfile files first, then the workflow's own
    config = snakemake_merge(DEMO, yaml.safe_load(preset.read_text()))
    layers = config_layers([preset, own], own, config)
    assert [(lay.path.name, lay.given) for lay in layers] == [
        ("config.yaml", False),
        ("preset.yaml", True),
    ]
    # --replace-workflow-config: the config holds only the preset's values
    replaced = yaml.safe_load(preset.read_text())
    assert [lay.path.name for lay in config_layers([preset, own], own, replaced)] == ["preset.yaml"]
    # no --configfile: just the workflow's own
    assert [lay.path.name for lay in config_layers([own], own, DEMO)] == ["config.yaml"]


def test_a_model_entry_is_taken_whole_from_the_last_file_and_cli_values_apply_on_top(tmp_path):
    own = write(tmp_path / "config.yaml", DEMO)
    mine = {
        "image_size": 64,
        "run_models": ["seed_ae"],
        "models": {"seed_ae": {"arch": "seed_ae", "epochs": 1}},
    }
    path = write(tmp_path / "mine.yaml", mine)
    cli = {"models": {"seed_ae": {"lr": 0.5}}}
    config = snakemake_merge(DEMO, mine, cli)
    assert config["models"]["seed_ae"]["crop_size"] == 128  # what Snakemake's merge gives
    layers = config_layers([path, own], own, config)
    found = overrides(config, merged(layers))
    assert found == cli
    use_whole_model_entries(config, layers, found)
    assert config["models"]["seed_ae"] == {"arch": "seed_ae", "epochs": 1, "lr": 0.5}
    assert (
        config["models"]["unet"] == DEMO["models"]["unet"]
    )  # the demo's other model stays defined


def test_a_configfile_that_defines_models_must_say_which_run(tmp_path):
    own = write(tmp_path / "config.yaml", DEMO)
    mine = {"models": {"small": {"arch": "unet"}}}
    path = write(tmp_path / "mine.yaml", mine)
    config = snakemake_merge(DEMO, mine)
    layers = config_layers([path, own], own, config)
    with pytest.raises(
        ConfigError, match=r"config key run_models: .*mine.yaml defines models \(small\)"
    ):
        check_model_selection(config, layers, {})
    check_model_selection(config, layers, {"run_models": ["small"]})  # given with --config
    write(path, {**mine, "run_models": ["small"]})
    check_model_selection(config, config_layers([path, own], own, config), {})


def test_validate_names_every_bad_key_at_once_and_fills_defaults():
    config = {"image_size": "big", "split": {"val_fraction": 2}}
    with pytest.raises(ConfigError) as err:
        validate(config, yaml.safe_load(SCHEMA.read_text()))
    message = str(err.value)
    assert "config key image_size:" in message and "config key split.val_fraction:" in message
    config = {}
    validate(config, yaml.safe_load(SCHEMA.read_text()))
    assert config["image_size"] == 256 and config["split"]["seed"] == 0  # nested defaults too
    assert config["dataset"]["source"] == "builtin"


def test_selected_models_must_be_defined():
    assert selected_models({"run_models": None, "models": {"a": {}, "b": {}}}) == ["a", "b"]
    with pytest.raises(
        ConfigError, match="config key run_models: 'nope' not defined under models:"
    ):
        selected_models({"run_models": ["a", "nope"], "models": {"a": {}}})


def defaults(**changes):
    config = merge(DEMO, changes)
    validate(config, yaml.safe_load(SCHEMA.read_text()))
    return config


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"split": {"val_fraction": 0.5, "test_fraction": 0.5}},
            "split.val_fraction + split.test_fraction must be below 1",
        ),
        (
            {"colorize": {"input_dir": "/no/such/folder"}},
            "colorize.input_dir '/no/such/folder' is not an existing folder",
        ),
        (
            {"dataset": {"source": "/no/such/folder"}},
            "dataset.source '/no/such/folder' is not 'builtin'",
        ),
        (
            {"eval_sets": {"odd": "/no/such/folder"}},
            "eval_sets.odd '/no/such/folder' is not an existing folder",
        ),
        (
            {"runtime": {"models": {"unett": {}}}},
            "config key runtime.models.unett: no model 'unett'",
        ),
        (
            {"image_size": 64},
            "config key models.seed_ae.crop_size: 128 is larger than image_size 64",
        ),
        (
            {"models": {"shipped": {"arch": "unet"}}, "run_models": ["shipped"]},
            "config key models.shipped: the name is taken",
        ),
    ],
)
def test_settings_that_would_fail_later_are_named(changes, message):
    config = defaults(**changes)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        check_settings(config, selected_models(config))


def test_prepare_returns_the_run_models_of_a_real_preset(tmp_path):
    own = REPO / "config/config.yaml"
    preset = REPO / "config/presets/cpu_quick.yaml"
    config = snakemake_merge(yaml.safe_load(own.read_text()), yaml.safe_load(preset.read_text()))
    for folder in config["eval_sets"].values():  # the preset reads ../shared/data: stand-ins here
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    config["eval_sets"] = {k: str(tmp_path / v) for k, v in config["eval_sets"].items()}
    config["dataset"]["source"] = str(tmp_path)
    run = prepare(config, [preset, own], own, SCHEMA)
    assert run == yaml.safe_load(preset.read_text())["run_models"]
    entry = yaml.safe_load(preset.read_text())["models"]["seed_ae"]
    assert (
        entry.items() <= config["models"]["seed_ae"].items()
    )  # the preset's, plus the schema's defaults
    assert (
        "crop_size" not in entry and config["models"]["seed_ae"]["crop_size"] == 0
    )  # not the demo's 128


def test_several_sources_are_named_folders_and_a_missing_one_names_its_key(tmp_path):
    from colorize.workflow_config import source_folders

    (tmp_path / "a").mkdir()
    (tmp_path / "x/b").mkdir(parents=True)
    assert source_folders("builtin") is None and source_folders(str(tmp_path)) is None
    assert source_folders([str(tmp_path / "a"), str(tmp_path / "x/b") + "/"]) == {
        "a": str(tmp_path / "a"),
        "b": str(tmp_path / "x/b") + "/",
    }
    assert source_folders({"one": str(tmp_path / "a"), "gone": None}) == {
        "one": str(tmp_path / "a")
    }
    with pytest.raises(
        ConfigError, match="config key dataset.source.two: folder '/no/such' does not exist"
    ):
        source_folders({"one": str(tmp_path / "a"), "two": "/no/such"})
    with pytest.raises(ConfigError, match="several folders are named a"):
        source_folders([str(tmp_path / "a"), str(tmp_path / "x/a")])
    with pytest.raises(ConfigError, match="every source is null"):
        source_folders({"one": None})


def test_package_source_is_the_workflows_own_folder_and_a_url_needs_one_set(tmp_path):
    """Where envs/colorize.yaml installs colorize from ($COLORIZE_SOURCE): the folder above
    workflow/ of a local workflow; a value the user set is kept; a workflow read from a URL
    under --sdm conda stops with a message naming the variable."""
    from colorize.workflow_config import package_source

    environ = {}
    assert package_source(REPO / "workflow/rules", environ, uses_conda=True) == str(REPO)
    assert environ == {"COLORIZE_SOURCE": str(REPO)}
    mine = {"COLORIZE_SOURCE": str(tmp_path)}
    assert package_source(REPO / "workflow/rules", mine, uses_conda=True) == str(tmp_path)
    url = "https://github.com/someone/colorize/workflow/rules@v0.2.0"
    assert package_source(url, {}, uses_conda=False) is None  # no conda env: nothing to install
    with pytest.raises(ConfigError, match=r"set COLORIZE_SOURCE to a clone of the same version"):
        package_source(url, {}, uses_conda=True)
