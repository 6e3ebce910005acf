"""The Snakemake workflow catalog's "standardized usage" (issue 12): workflow/Snakefile,
config/README.md covering every preset, a well-formed .snakemake-workflow-catalog.yml, the
config schema where the catalog reads it, and a .test case its rule graph can be drawn from.
(`snakemake --lint` and `snakefmt --check` are tests/test_lint.py.)"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from conftest import REPO
from workflow_utils import SNAKEMAKE


def test_catalog_settings():
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert set(usage) <= {"mandatory-flags", "software-stack-deployment", "report"}
    assert (
        set(usage["mandatory-flags"]) == {"desc", "flags"}
        and "pip install" in usage["mandatory-flags"]["desc"]
    )
    assert isinstance(usage["mandatory-flags"]["flags"], (list, str))
    deployment = usage["software-stack-deployment"]
    assert deployment and set(deployment) <= {"conda", "apptainer", "apptainer+conda", "singularity",
                                              "singularity+conda"}  # fmt: skip
    assert all(isinstance(v, bool) for v in deployment.values()) and deployment["conda"] is True
    assert usage["report"] is True


def test_the_layout_the_catalog_looks_for():
    assert (REPO / "workflow/Snakefile").is_file() and not (REPO / "Snakefile").exists()
    assert any((REPO / "workflow/rules").glob("*.smk"))
    assert (REPO / "config/config.yaml").is_file()  # what snakedeploy's deployment reads
    assert (REPO / "workflow/schemas/config.schema.yaml").is_file()  # the catalog's parameter table
    snakefile = (REPO / "workflow/Snakefile").read_text()
    assert (
        'configfile: "config/config.yaml"' in snakefile
        and 'report: "report/workflow.rst"' in snakefile
    )
    readme = (REPO / "README.md").read_text().lower()
    assert "snakemake" in readme and "workflow" in readme


def test_config_readme_covers_every_preset_and_the_model_selection():
    text = (REPO / "config/README.md").read_text()
    presets = sorted(p.name for p in (REPO / "config/presets").glob("*.yaml"))
    assert presets
    for name in presets:
        assert f"(presets/{name})" in text, name  # linked in the presets table
        for model in yaml.safe_load((REPO / "config/presets" / name).read_text()).get(
            "run_models", []
        ):  # data presets: none
            assert f"`{model}`" in text, (name, model)
    for key in ("run_models", "runtime", "dataset.source", "eval_sets", "--configfile"):
        assert key in text


@pytest.mark.slow
def test_the_catalog_can_draw_the_rule_graph_of_the_test_case():
    proc = subprocess.run([SNAKEMAKE, "-s", "workflow/Snakefile", "-c", "1", "-d", ".test", "--forceall",
                           "--rulegraph"], cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule in ("train", "evaluate", "grid", "overview", "all"):
        assert f'label = "{rule}"' in proc.stdout
