"""The real workflow on a real SLURM cluster (profiles/slurm + profiles/slurm-local) gives the
same results as a local run, every job runs as a SLURM job, and training gets one GPU."""

from __future__ import annotations

import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from conftest import make_good_images
from slurm_cluster import REPO
from test_slurm_smoke import _slurm_job_info
from workflow_utils import copy_workflow, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TIMEOUT_S = 900


def _config():
    cfg = tiny_config("../photos")
    cfg["models"] = {"unet": cfg["models"]["unet"]}  # one model keeps the cluster run short
    cfg["shipped_model"] = False
    cfg["colorize"] = {"input_dir": "../photos", "chunks": 2}  # two GPU jobs, then the gather
    return cfg


def _shards(work):
    out = {}
    for p in sorted((work / "results/tiny/shards").glob("*.h5")):
        with h5py.File(p) as f:
            out[p.name] = (f["L"][...], f["ab"][...], [s.decode() for s in f["relpath"][...]])
    return out


def test_workflow_on_slurm_matches_local_run(slurm_cluster, tmp_path):
    make_good_images(tmp_path / "photos", n=8, size=(48, 64))
    local = copy_workflow(tmp_path / "local")
    cluster = copy_workflow(tmp_path / "cluster")
    for work in (local, cluster):
        write_config(work, _config())
    snakemake(local)

    cmd = [
        "timeout",
        "-s",
        "INT",
        "-k",
        "30",
        str(TIMEOUT_S),
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(REPO / "profiles/slurm"),
        "--profile",
        str(REPO / "profiles/slurm-local"),
        "--workflow-profile",
        "none",
        "--configfile",
        "config.yaml",
    ]
    proc = subprocess.run(
        cmd,
        cwd=cluster,
        env=slurm_cluster.env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S + 60,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-8000:]

    # every job (all but the target-only rule `all`) was submitted to SLURM and completed there
    stats = dict(
        re.findall(
            r"^(\w+)\s+(\d+)$", log.split("Job stats:", 1)[1].split("Select jobs", 1)[0], re.M
        )
    )
    n_jobs = sum(int(v) for k, v in stats.items() if k not in ("total", "all"))
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == n_jobs >= 8, (stats, submitted)
    info = _slurm_job_info(submitted, slurm_cluster.has_sacct)
    assert all(info[j]["State"] == "COMPLETED" for j in submitted), info
    train_jobs = [j for j in submitted if info[j].get("Comment", "").startswith("rule_train")]
    assert len(train_jobs) == 1, info
    # read back from SLURM: the training job was allocated exactly one GPU
    assert "gres/gpu=1" in info[train_jobs[0]]["AllocTRES"].split(","), info[train_jobs[0]]
    shard_jobs = [j for j in submitted if info[j].get("Comment", "").startswith("rule_shard")]
    assert shard_jobs and all("gres/gpu" not in info[j]["AllocTRES"] for j in shard_jobs)
    # the folder to colorize went out as two chunk jobs with a GPU each, gathered by one more
    chunk_jobs = [
        j for j in submitted if info[j].get("Comment", "").startswith("rule_colorize_folder")
    ]
    assert len(chunk_jobs) == 2 and all(
        "gres/gpu=1" in info[j]["AllocTRES"].split(",") for j in chunk_jobs
    ), info
    assert stats.get("colorize_status") == "1", stats

    # the cluster's results equal the local run's
    for name in ("manifest.tsv", "summary.tsv"):
        assert (cluster / "results/tiny" / name).read_text() == (
            local / "results/tiny" / name
        ).read_text()
    status = [
        (w / "results/tiny/colorized/unet/status.tsv").read_text().splitlines()
        for w in (local, cluster)
    ]
    assert len(status[0]) == len(status[1]) == 9 and all(
        "\tok\t" in row for row in status[1][1:]
    ), status
    a, b = _shards(local), _shards(cluster)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k][0], b[k][0])
        np.testing.assert_array_equal(a[k][1], b[k][1])
        assert a[k][2] == b[k][2]
    wa = torch.load(local / "results/tiny/models/unet/checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(cluster / "results/tiny/models/unet/checkpoint.pt", weights_only=True)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
    ea = (local / "results/tiny/eval/unet/summary.tsv").read_text().splitlines()
    eb = (cluster / "results/tiny/eval/unet/summary.tsv").read_text().splitlines()
    assert ea[0] == eb[0] and len(ea) == len(eb)
    for ra, rb in zip(ea[1:], eb[1:]):
        va, vb = ra.split("\t"), rb.split("\t")
        assert va[0] == vb[0]
        np.testing.assert_allclose(
            [float(x) for x in va[1:]], [float(x) for x in vb[1:]], rtol=1e-3, atol=1e-3
        )
