"""Run the real workflow with Snakemake in a temporary directory (used by the end-to-end tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def copy_workflow(workdir: Path) -> Path:
    """A private copy of the workflow (workflow/Snakefile, rules, scripts, profiles, envs) in
    ``workdir``, so a test can edit a script (code-change trigger) without touching the repository."""
    workdir.mkdir(parents=True, exist_ok=True)
    for d in ("workflow", "profiles", "envs"):
        shutil.copytree(REPO / d, workdir / d, ignore=shutil.ignore_patterns("__pycache__"))
    return workdir


# The folders of ../shared/data the presets read (standin_repo gives each one small photo).
SHARED_FOLDERS = (
    "intel_natural/train",
    "intel_natural/test",
    "bsds500/train",
    "bsds500/val",
    "imagenette/train",
    "imagenette/val",
    "flowers",
    "clothing",
    "faces",
)


def standin_repo(base: Path) -> Path:
    """A copy of the repository's workflow, config/, profiles and envs at ``base/repo``, with a
    stand-in ``base/shared/data`` beside it (one small photo per folder the presets read): the
    presets and the documented commands dry-run there without the real photo sets."""
    from helpers import colour_photo, save

    work = base / "repo"
    for d in ("workflow", "config", "profiles", "envs"):
        shutil.copytree(REPO / d, work / d, ignore=shutil.ignore_patterns("__pycache__"))
    for i, folder in enumerate(SHARED_FOLDERS):
        save(base / "shared/data" / folder / f"photo_{i}.png", colour_photo(40, 48, seed=i))
    return work


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(
    workdir: Path, *args: str, timeout: int = 600, check: bool = True
) -> subprocess.CompletedProcess:
    """Run Snakemake in ``workdir`` with ``workdir/config.yaml``: the workflow copied there by
    ``copy_workflow`` if present, else the repository's Snakefile."""
    snakefile = workdir / "workflow/Snakefile"
    snakefile = snakefile if snakefile.exists() else REPO / "workflow/Snakefile"
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> number of jobs a dry run would execute now (empty: nothing to do)."""
    proc = snakemake(workdir, "--dry-run", *args)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    m = re.search(r"Job stats:\n(.*?)\n\s*\n", out, re.S)
    if not m:
        raise AssertionError(f"no job stats in dry run output:\n{out[-4000:]}")
    jobs = {}
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            jobs[parts[0]] = int(parts[1])
    return jobs


def planned_outputs(workdir: Path, rule: str, *args: str) -> list[str]:
    """The output files of the jobs of ``rule`` that a dry run would execute now."""
    proc = snakemake(workdir, "--dry-run", *args)
    return re.findall(rf"^rule {rule}:\n(?:    .*\n)*?    output: (.*)$", proc.stdout, re.M)


def tiny_config(source: str, **overrides) -> dict:
    """A config that runs the whole workflow in seconds on a handful of small images."""
    config = {
        "dataset": {"name": "tiny", "source": str(source), "sha256": None},
        "image_size": 32,
        "min_side": 16,
        "split": {"val_fraction": 0.25, "test_fraction": 0.25, "seed": 0},
        "shards": {"train": 2, "val": 1, "test": 1},
        "models": {
            "ae": {"arch": "seed_ae", "epochs": 2, "batch_size": 4},
            "unet": {"arch": "unet", "base_channels": 4, "depth": 2, "epochs": 2, "batch_size": 4},
        },
        "runtime": {"num_workers": 0, "log_interval": 0},
        "report": {"grid_rows": 2},
        "shipped_model": False,  # the shipped model has its own end-to-end test
    }
    for key, value in overrides.items():
        config[key] = value
    return config
