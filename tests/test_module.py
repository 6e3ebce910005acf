"""The workflow used as a Snakemake module by another project (docs/module.md).

A project in a temporary folder, with its own Snakefile (``module colorize: snakefile: <this
repository's workflow/Snakefile>, config: config`` then ``use rule * from colorize``), its own
config file (not at the workflow's ``config/config.yaml``) and its own results folder, runs the
workflow end to end on tiny photos, builds the report, and has nothing left to do. Scripts,
the schema, report captions and the conda environment resolve from the workflow's folder, not
the project's: the environment's pip line installs colorize from ``$COLORIZE_SOURCE``, which
the workflow sets to its own source folder, and pip resolves that line to this package from
the folder Snakemake creates environments in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import colorize
from colorize.tsv import read_tsv
from conftest import REPO, make_good_images
from workflow_utils import SNAKEMAKE, tiny_config

pytestmark = pytest.mark.slow

PROJECT_SNAKEFILE = f"""\
configfile: "settings/colorize.yaml"


module colorize:
    snakefile:
        "{REPO / "workflow/Snakefile"}"
    config:
        config


use rule * from colorize


rule colorize_source:
    # what the workflow put into the jobs' environment for envs/colorize.yaml
    output:
        "colorize_source.txt",
    shell:
        'printf %s "$COLORIZE_SOURCE" > {{output}}'
"""


def run(project: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake as a user of the other project runs it: from its folder, nothing else given."""
    env = {k: v for k, v in os.environ.items() if k != "COLORIZE_SOURCE"}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([SNAKEMAKE, "--cores", "2", *args], cwd=project, capture_output=True,
                          text=True, timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("module")
    make_good_images(base / "photos", n=10, size=(48, 64))
    project = base / "project"
    (project / "settings").mkdir(parents=True)
    config = tiny_config("../photos")
    config["run_models"] = ["unet"]
    config["models"] = {"unet": dict(config["models"]["unet"], epochs=1)}
    (project / "settings/colorize.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (project / "Snakefile").write_text(PROJECT_SNAKEFILE)
    run(project)  # the workflow's default target, `all`
    run(project, "--report", "report.html")
    run(project, "colorize_source.txt")
    return project


def test_the_module_runs_the_workflow_into_the_projects_own_folder(project):
    res = project / "results/tiny"
    manifest = read_tsv(res / "manifest.tsv")
    assert len([r for r in manifest if r["status"] == "ok"]) == 10
    assert [int(r["epoch"]) for r in read_tsv(res / "models/unet/history.tsv")] == [1]
    summary = {r["method"] for r in read_tsv(res / "eval/unet/summary.tsv")}
    assert summary == {"unet", "gray"}
    assert (res / "eval/unet/grid.png").stat().st_size > 1000
    assert "grid of model unet" in (res / "overview.html").read_text()
    assert (res / "logs/train/unet.log").stat().st_size > 0
    # the schema's defaults were filled in from the workflow's folder (not the project's)
    assert not (project / "workflow").exists() and not (project / "config").exists()


def test_the_report_opens_on_the_overview_through_the_module(project):
    report = (project / "report.html").read_text()
    assert "Did the colours beat gray?" in report and "1. Overview" in report
    assert "grid.png" in report and "loss_curve.png" in report  # captions found, items in


def test_a_finished_module_run_has_nothing_left_to_do(project):
    out = run(project, "--dry-run")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_the_conda_environment_installs_colorize_from_the_workflows_folder(project):
    """What `conda env create` does with envs/colorize.yaml's pip section (Snakemake copies the
    file into .snakemake/conda/; conda runs pip there on a requirements file of those lines),
    for the colorize line, with the environment the workflow gave its jobs."""
    source = (project / "colorize_source.txt").read_text()
    assert Path(source) == REPO
    env_file = yaml.safe_load((REPO / "envs/colorize.yaml").read_text())
    pip_lines = next(d["pip"] for d in env_file["dependencies"] if isinstance(d, dict))
    line = next(x for x in pip_lines if "COLORIZE_SOURCE" in x)
    where = project / ".snakemake/conda-check"
    where.mkdir(parents=True)
    (where / "requirements.txt").write_text(line + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
         "--no-build-isolation", "--quiet", "--report", "report.json", "-r", "requirements.txt"],
        cwd=where, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, COLORIZE_SOURCE=source),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (item,) = json.loads((where / "report.json").read_text())["install"]
    assert item["metadata"]["name"] == "colorize"
    assert item["metadata"]["version"] == colorize.__version__
    assert item["download_info"]["url"] == REPO.as_uri()
    assert item["download_info"]["dir_info"] == {"editable": True}
