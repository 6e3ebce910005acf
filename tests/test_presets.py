"""Which models a configuration trains (issue 12): every preset's dry run plans exactly the
models it names, a config that defines models must say which run (`run_models`), and a model
that is defined but not selected is still built when its files are asked for.

The presets are dry-run in a private copy of the repository's workflow and config/, beside a
stand-in ``../shared/data`` (one small photo per folder the presets read), so the test needs
neither the real photo sets nor a finished run.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import REPO
from workflow_utils import SNAKEMAKE, standin_repo

pytestmark = pytest.mark.slow

PRESETS = REPO / "config/presets"
# How each preset is run, as its header says: the files given to --configfile, in order.
RUNS = {
    "cpu_quick": ["cpu_quick.yaml"],
    "intel_seed": ["intel_seed.yaml"],
    "recommended": ["recommended.yaml"],
    "shipped": ["shipped.yaml"],
    "shipped_today": ["shipped.yaml", "shipped_today.yaml"],
    "experiment": ["shipped.yaml", "shipped_today.yaml", "experiment.yaml"],
    "diverse": ["diverse.yaml"],
    "diverse_present": ["shipped.yaml", "diverse_present.yaml"],
}
DEMO_MODELS = {"seed_ae", "unet"}  # config/config.yaml's run_models


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the workflow and its config/ at <tmp>/repo, with <tmp>/shared/data beside it."""
    return standin_repo(tmp_path_factory.mktemp("presets"))


def dry_run(work, *args, check=True):
    proc = subprocess.run(
        [SNAKEMAKE, "--dry-run", "--cores", "1", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"dry run failed: {args}\n{out[-5000:]}")
    return proc.returncode, out


def planned(out: str, rule: str) -> set[str]:
    """The `model` wildcard of every job of ``rule`` a dry run lists."""
    models, current = set(), None
    for line in out.splitlines():
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if m:
            current = m.group(1)
        m = re.match(r"\s+wildcards: .*\bmodel=([^,\s]+)", line)
        if m and current == rule:
            models.add(m.group(1))
    return models


def configfiles(*names):
    return ["--configfile", *[f"config/presets/{n}" for n in names]]


def test_every_preset_is_covered():
    assert {p.name for p in PRESETS.glob("*.yaml")} == {f for files in RUNS.values() for f in files}


@pytest.mark.parametrize("preset", sorted(RUNS))
def test_each_preset_plans_exactly_its_models(repo, preset):
    files = RUNS[preset]
    selecting = [f for f in files if "run_models" in yaml.safe_load((PRESETS / f).read_text())]
    # run_models of the last file that sets it (a list replaces the earlier ones); a data
    # preset alone trains the demo's. A model defined but not selected is not planned.
    own = (
        set(yaml.safe_load((PRESETS / selecting[-1]).read_text())["run_models"])
        if selecting
        else DEMO_MODELS
    )
    _, out = dry_run(repo, *configfiles(*files))
    assert planned(out, "train") == own
    assert planned(out, "evaluate") == own | {"shipped"}  # shipped_model: true, as in the default
    assert "overview" in out


def test_the_default_config_plans_the_demo_models(repo):
    _, out = dry_run(repo)
    assert planned(out, "train") == {"seed_ae", "unet"}


def write(path, config: dict):
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def test_a_config_that_defines_models_must_say_which_run(repo, tmp_path):
    mine = write(
        tmp_path / "mine.yaml",
        {
            "dataset": {"name": "mine", "source": "../shared/data"},
            "models": {"small": {"arch": "unet", "epochs": 1}},
        },
    )
    code, out = dry_run(repo, "--configfile", mine, check=False)
    assert (
        code != 0 and "config key run_models" in out and "mine.yaml defines models (small)" in out
    )
    assert "run_models: [small]" in out  # says what to add
    _, out = dry_run(repo, "--configfile", mine, "--config", "run_models=[small]")
    assert planned(out, "train") == {"small"}


def test_run_models_must_name_defined_models(repo, tmp_path):
    mine = write(
        tmp_path / "mine.yaml",
        {"run_models": ["small", "nope"], "models": {"small": {"arch": "unet"}}},
    )
    code, out = dry_run(repo, "--configfile", mine, check=False)
    assert code != 0 and "config key run_models: 'nope' not defined under models:" in out


def test_a_preset_model_is_its_own_entry_not_merged_with_the_demos(repo, tmp_path):
    """config/config.yaml's seed_ae sets crop_size 128; a seed_ae of a 64 px config that does
    not set it trains on whole images (merged key by key it would be 128 > 64 and refused)."""
    mine = write(
        tmp_path / "mine.yaml",
        {
            "image_size": 64,
            "run_models": ["seed_ae"],
            "models": {"seed_ae": {"arch": "seed_ae", "epochs": 1}},
        },
    )
    _, out = dry_run(repo, "--configfile", mine)
    assert planned(out, "train") == {"seed_ae"}


def test_checks_apply_to_the_selected_models(repo, tmp_path):
    # the demo's unet (crop_size 128) is defined but not selected at image_size 64: no error
    mine = {
        "image_size": 64,
        "run_models": ["small"],
        "models": {"small": {"arch": "unet", "crop_size": 96}},
    }
    code, out = dry_run(repo, "--configfile", write(tmp_path / "a.yaml", mine), check=False)
    assert code != 0 and "config key models.small.crop_size: 96 is larger than image_size 64" in out
    mine["models"]["small"]["crop_size"] = 32
    _, out = dry_run(repo, "--configfile", write(tmp_path / "b.yaml", mine))
    assert planned(out, "train") == {"small"}
    # ... and to a model asked for by its files
    code, out = dry_run(
        repo,
        "results/builtin/models/unet/best.pt",
        "--configfile",
        write(tmp_path / "b.yaml", mine),
        check=False,
    )
    assert code != 0 and "config key models.unet.crop_size: 128 is larger than image_size 64" in out


def test_an_unselected_model_is_built_when_its_files_are_asked_for(repo):
    # shipped.yaml's effnet_mse is defined but experiment.yaml selects its own five
    _, out = dry_run(
        repo,
        "results/shipped/models/effnet_mse/best.pt",
        *configfiles("shipped.yaml", "shipped_today.yaml", "experiment.yaml"),
    )
    assert planned(out, "train") == {"effnet_mse"}
    # experiment.yaml's own two extra recipes are defined there but not in its run_models
    _, out = dry_run(
        repo,
        "results/shipped/models/exp_effnet_l1/best.pt",
        "results/shipped/models/exp_effnet_whole128/best.pt",
        *configfiles("shipped.yaml", "shipped_today.yaml", "experiment.yaml"),
    )
    assert planned(out, "train") == {"exp_effnet_l1", "exp_effnet_whole128"}
    code, out = dry_run(
        repo, "results/shipped/models/nosuch/best.pt", *configfiles("shipped.yaml"), check=False
    )
    assert code != 0 and "no model 'nosuch' under models:" in out


def test_runtime_overrides_must_name_a_model(repo, tmp_path):
    mine = write(tmp_path / "mine.yaml", {"runtime": {"models": {"unett": {"num_workers": 1}}}})
    code, out = dry_run(repo, "--configfile", mine, check=False)
    assert code != 0 and "config key runtime.models.unett: no model 'unett'" in out


def test_machine_knobs_are_not_model_settings(repo, tmp_path):
    """num_workers and friends live in `runtime:` only (a model entry with them is refused)."""
    mine = write(
        tmp_path / "mine.yaml",
        {"run_models": ["small"], "models": {"small": {"arch": "unet", "num_workers": 2}}},
    )
    code, out = dry_run(repo, "--configfile", mine, check=False)
    assert code != 0 and "config key models.small" in out and "num_workers" in out


def test_the_shipped_recipe_trains_on_the_diverse_mix():
    """shipped.yaml's data is diverse.yaml's (issue 20): the six folders, their eval sets, split and preprocessing."""
    diverse = yaml.safe_load((PRESETS / "diverse.yaml").read_text())
    shipped = yaml.safe_load((PRESETS / "shipped.yaml").read_text())
    assert {k: v for k, v in shipped["dataset"].items() if k != "name"} == {
        k: v for k, v in diverse["dataset"].items() if k != "name"
    }
    assert sorted(diverse["dataset"]["source"]) == [
        "bsds500",
        "clothing",
        "faces",
        "flowers",
        "imagenette",
        "intel_natural",
    ]
    for key in (
        "eval_sets",
        "split",
        "shards",
        "image_size",
        "resize_policy",
        "gray_chroma_threshold",
        "min_side",
    ):
        assert shipped[key] == diverse[key], key
    present = yaml.safe_load((PRESETS / "diverse_present.yaml").read_text())
    left = {
        k
        for k, v in {**diverse["dataset"]["source"], **present["dataset"]["source"]}.items()
        if v is not None
    }
    assert left == {"bsds500", "intel_natural"}


def test_the_two_present_folders_plan_two_sources(repo):
    _, out = dry_run(repo, *configfiles("shipped.yaml", "diverse_present.yaml"))
    assert "results/diverse_present/scan.tsv" in out and "imagenette_val" not in out


def test_shipped_today_is_the_one_source_data_of_the_shipped_checkpoint(repo):
    _, out = dry_run(
        repo, "results/shipped/models/effnet_mse/best.pt",
        *configfiles("shipped.yaml", "shipped_today.yaml"),
    )  # fmt: skip
    assert "results/shipped/scan.tsv" in out
    assert len(re.findall(r"^rule shard:$", out, re.M)) == 9  # 8 train + 1 val shards
    card = (REPO / "src/colorize/shipped/MODEL_CARD.md").read_text()
    assert "config/presets/shipped.yaml config/presets/shipped_today.yaml" in card


def test_a_missing_source_folder_is_a_config_error_naming_the_key(repo, tmp_path):
    mine = write(
        tmp_path / "m.yaml", {"dataset": {"source": {"flowers": "../shared/data/no_flowers"}}}
    )
    code, out = dry_run(repo, *configfiles("shipped.yaml"), "--configfile", mine, check=False)
    assert code != 0
    assert (
        "config key dataset.source.flowers: folder '../shared/data/no_flowers' does not exist"
        in out
    )
    listed = write(
        tmp_path / "l.yaml",
        {
            "dataset": {
                "name": "x",
                "source": ["../shared/data/flowers", "../shared/data/elsewhere/flowers"],
            }
        },
    )
    code, out = dry_run(repo, "--configfile", listed, check=False)
    assert code != 0 and "config key dataset.source: several folders are named flowers" in out
