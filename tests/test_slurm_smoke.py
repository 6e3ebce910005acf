"""Smoke test: profiles/slurm drives real SLURM jobs, GPU rules get a GPU.

Runs a two-rule workflow with ``snakemake --profile profiles/slurm --profile
profiles/slurm-local`` against the cluster from the ``slurm_cluster`` fixture
(the local one from .ci/slurm/start: two fake GPUs, slurmdbd accounting), then
reads back from SLURM what each job was given.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slurm_cluster import REPO, _run

pytestmark = pytest.mark.slurm

SNAKEMAKE_TIMEOUT_S = 600

SNAKEFILE = textwrap.dedent(
    """\
    rule cpu_step:
        output: "cpu.txt"
        shell:
            "echo SLURM_JOB_ID=$SLURM_JOB_ID > {{output}}; "
            "echo CUDA_VISIBLE_DEVICES=${{{{CUDA_VISIBLE_DEVICES-<unset>}}}} >> {{output}}"

    rule gpu_step:
        output: "gpu.txt"
        resources: gpu=1
        shell:
            "echo SLURM_JOB_ID=$SLURM_JOB_ID > {{output}}; "
            "{python} -c \\"import os, torch; "
            "print('CUDA_VISIBLE_DEVICES=' + os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')); "
            "print('TORCH_CUDA=' + str(torch.cuda.is_available()))\\" >> {{output}}"
    """
)


def _fields(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().split() if "=" in line)


def _slurm_job_info(job_ids: list[str], has_sacct: bool) -> dict[str, dict[str, str]]:
    """State and allocated TRES of each job, from sacct, else scontrol."""
    info: dict[str, dict[str, str]] = {}
    if has_sacct:
        res = _run(
            "sacct -X -P -n -o JobIDRaw,JobName,State,AllocTRES -j".split() + [",".join(job_ids)]
        )
        assert res.returncode == 0, res.stderr
        for line in res.stdout.splitlines():
            jid, name, state, tres = line.split("|")
            info[jid] = {"JobName": name, "State": state, "AllocTRES": tres}
    for jid in job_ids:  # scontrol knows finished jobs for MinJobAge seconds
        res = _run(["scontrol", "-o", "show", "job", jid])
        if res.returncode != 0:
            continue
        kv = dict(re.findall(r"(\w+)=(\S*)", res.stdout))
        entry = info.setdefault(jid, {})
        entry.setdefault("JobName", kv.get("JobName", ""))
        entry.setdefault("State", kv.get("JobState", ""))
        entry.setdefault("AllocTRES", kv.get("TRES", ""))
        entry["Comment"] = kv.get("Comment", "")
    return info


def test_slurm_profile_runs_every_job_on_slurm_with_gpu(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(python=sys.executable))
    # Snakemake ignores SIGTERM; SIGINT makes it cancel its SLURM jobs.
    timeout = f"timeout -s INT -k 30 {SNAKEMAKE_TIMEOUT_S}".split()
    snakemake = [sys.executable, "-m", "snakemake"]
    profiles = ["--profile", str(REPO / "profiles" / "slurm")]
    profiles += ["--profile", str(REPO / "profiles" / "slurm-local")]
    profiles += ["--workflow-profile", "none"]
    where = ["--snakefile", str(tmp_path / "Snakefile"), "--directory", str(tmp_path)]
    # Two independent jobs: both are queued at once and run side by side.
    cmd = timeout + snakemake + profiles + where + ["cpu.txt", "gpu.txt"]
    res = subprocess.run(
        cmd,
        cwd=tmp_path,
        env=slurm_cluster.env(),
        capture_output=True,
        text=True,
        timeout=SNAKEMAKE_TIMEOUT_S + 60,
    )
    log = res.stdout + res.stderr
    slurm_logs = "\n".join(
        f"--- {p}\n{p.read_text()}" for p in sorted(tmp_path.glob(".snakemake/slurm_logs/**/*.log"))
    )
    assert res.returncode == 0, f"snakemake failed ({res.returncode}):\n{log}\n{slurm_logs}"

    # Every job was submitted to SLURM, and ran inside that SLURM job.
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    cpu, gpu = _fields(tmp_path / "cpu.txt"), _fields(tmp_path / "gpu.txt")
    ran_in = [cpu.get("SLURM_JOB_ID"), gpu.get("SLURM_JOB_ID")]
    assert all(ran_in) and ran_in[0] != ran_in[1], (cpu, gpu)
    assert sorted(submitted) == sorted(ran_in), (submitted, ran_in, log)

    # The GPU job saw its (fake) GPU; torch runs either way (no CUDA here).
    assert gpu.get("CUDA_VISIBLE_DEVICES") not in (None, "", "<unset>"), gpu
    assert gpu.get("TORCH_CUDA") in ("True", "False"), gpu

    # SLURM's own record of the two jobs.
    info = _slurm_job_info(ran_in, slurm_cluster.has_sacct)
    cpu_job, gpu_job = info.get(ran_in[0]), info.get(ran_in[1])
    assert cpu_job and gpu_job, f"SLURM does not know jobs {ran_in}: {info}"
    assert cpu_job["State"] == gpu_job["State"] == "COMPLETED", info
    assert cpu_job["JobName"] == gpu_job["JobName"] != "", info  # the run's UUID
    assert "gres/gpu=1" in gpu_job["AllocTRES"].split(","), info
    assert "gres/gpu" not in cpu_job["AllocTRES"], info
    if "Comment" in gpu_job:  # the plugin tags each job with its rule
        assert cpu_job.get("Comment") == "rule_cpu_step", info
        assert gpu_job["Comment"] == "rule_gpu_step", info
