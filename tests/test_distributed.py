"""colorize.distributed and the training it runs: N DDP processes under torchrun (gloo, on the
CPU here) train as one process with N times the batch, a killed run resumes, two launchers
rendezvous as two nodes would, and a SLURM job asking for 2 GPUs gets them and uses both.

Tolerance: the N processes take the same steps on the same samples as the one process, but sum
in another order (N partial means, weighted and all-reduced, instead of one mean), so float32
results differ in the last bits: the losses in the 7th digit, most weights by ~1e-7. Adam
divides each step by the gradient's running RMS, so where a gradient is near zero a last-bit
difference moves a weight by a part of the learning rate (3e-3 here): measured up to 4e-5, on
1 of 7,550 weights. Checked: weights within 1e-4 + 1e-4 x |w| (a wrong split of the data
moves them by ~1e-2), losses within 1e-5 relative, validation PSNR within 0.01 dB (it is
scored on 8-bit RGB, where a change of 1e-7 can move a pixel across a rounding step). The
model uses GroupNorm: BatchNorm's statistics are per process (of the per-GPU batch), so
`norm: batch` models agree only approximately.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from colorize.data import (
    InMemoryDataset,
    ShardDataset,
    batches_per_epoch,
    iterate_batches,
    rank_spans,
)
from colorize.distributed import torchrun_command
from colorize.train import split_settings, train
from conftest import make_good_images
from helpers import Bag, kept_logging
from test_slurm_smoke import _slurm_job_info
from workflow_utils import copy_workflow, tiny_config, write_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workflow" / "scripts" / "train.py"
# A tiny U-Net trained on the `shards` fixture (11 train images: global batches of 4, 4, 3).
SETTINGS = {
    "arch": "unet",
    "base_channels": 4,
    "depth": 2,
    "norm": "group",
    "epochs": 3,
    "lr": 3e-3,
    "crop_size": 24,
    "log_interval": 0,
    "num_workers": 0,
}
STARTUP_S = 180  # torchrun and two processes importing torch, on a busy 2-core machine

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def on_the_cpu(monkeypatch):
    """Every process on the CPU (gloo), also on a machine with fewer GPUs than processes."""
    monkeypatch.setenv("COLORIZE_DEVICE", "cpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def single_process(settings: dict, shards, out: Path) -> dict:
    """One process trained with the global batch of the N-process run of ``settings``."""
    one = {**settings, "batch_size": settings["batch_size"] * settings["gpus"], "gpus": 1}
    return train(*split_settings(one), shards["train"], shards["val"], out, progress=False)


def entry_args(settings: dict, shards, out: Path) -> list[str]:
    """The arguments of ``python -m colorize.train`` (what the workflow's script passes)."""
    return [
        "--settings",
        json.dumps(settings),
        "--train",
        *map(str, shards["train"]),
        "--val",
        *map(str, shards["val"]),
        "--out",
        str(out),
        "--name",
        "tiny",
    ]


def assert_same_training(a: Path, b: Path) -> None:
    """Two checkpoints hold the same training: epochs, losses, PSNR and weights (the module's tolerance)."""
    ca, cb = (torch.load(p, weights_only=True) for p in (a, b))
    assert [r["epoch"] for r in ca["history"]] == [r["epoch"] for r in cb["history"]]
    for ra, rb in zip(ca["history"], cb["history"]):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5), (ra, rb)
        assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-5), (ra, rb)
        assert ra["val_psnr"] == pytest.approx(rb["val_psnr"], abs=0.01), (ra, rb)
    assert ca["model"].keys() == cb["model"].keys()
    for k in ca["model"]:
        torch.testing.assert_close(ca["model"][k], cb["model"][k], rtol=1e-4, atol=1e-4)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- each process's share of the data --------------------------------------------------------


def test_rank_spans_split_every_global_batch_and_keep_ranks_in_step():
    # 11 samples, 2 processes of batch 2: global batches [0, 4), [4, 8), [8, 11) shared 2/2, 2/2, 1/2
    assert rank_spans(11, 2, 0, 2) == [(0, 2), (4, 6), (8, 9)]
    assert rank_spans(11, 2, 1, 2) == [(2, 4), (6, 8), (9, 11)]
    assert rank_spans(11, 4) == [(0, 4), (4, 8), (8, 11)]  # one process: plain batches
    assert rank_spans(11, 4, drop_last=True) == [(0, 4), (4, 8)]
    # a last global batch of 1 cannot give both processes a sample: training leaves it out ...
    assert rank_spans(9, 2, 0, 2) == [(0, 2), (4, 6)] and rank_spans(9, 2, 1, 2) == [(2, 4), (6, 8)]
    # ... validation gives it to the one process it fits
    assert rank_spans(9, 2, 0, 2, lockstep=False) == [(0, 2), (4, 6)]
    assert rank_spans(9, 2, 1, 2, lockstep=False) == [(2, 4), (6, 8), (8, 9)]


@pytest.mark.parametrize("kind", ["stream", "stream, 2 workers", "in memory"])
def test_the_ranks_batches_together_are_the_single_process_batches(shards, kind):
    """Batches of 3 per process: 6 + 5 images give global batches of 6 and 5 (also per worker:
    one shard each), the 5 shared 2 + 3."""

    def dataset(**share):
        cls = InMemoryDataset if kind == "in memory" else ShardDataset
        ds = cls(shards["train"], crop_size=24, seed=3, **share)
        ds.set_epoch(2)
        return ds

    workers = 2 if "workers" in kind else 0
    single = list(iterate_batches(dataset(), 6, num_workers=workers))
    ranks = [dataset(rank=r, world_size=2) for r in (0, 1)]
    per_rank = [list(iterate_batches(ds, 3, num_workers=workers)) for ds in ranks]
    assert (
        len(per_rank[0])
        == len(per_rank[1])
        == len(single)
        == batches_per_epoch(ranks[0], 3, workers)
        == 2
    )
    assert sorted(len(L) for L, _ in per_rank[0] + per_rank[1]) == [2, 3, 3, 3]
    for step, (L, ab) in enumerate(single):
        torch.testing.assert_close(torch.cat([p[step][0] for p in per_rank]), L, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([p[step][1] for p in per_rank]), ab, rtol=0, atol=0)


def test_a_training_in_one_process_that_asks_for_two_says_how_to_start_it(shards, tmp_path):
    model_cfg, train_cfg = split_settings({**SETTINGS, "gpus": 2})
    with pytest.raises(
        ValueError, match=r"gpus: 2, but 1 process.*torchrun --nproc_per_node=2 -m colorize.train"
    ):
        train(
            model_cfg, train_cfg, shards["train"], shards["val"], tmp_path / "out", progress=False
        )


# --- real torchrun runs ----------------------------------------------------------------------


def test_the_workflow_script_trains_on_two_processes_as_one_with_their_global_batch(
    shards, tmp_path
):
    """gpus: 2 -> the script starts torchrun; both ranks log to the job's log; the result is
    one process's with batch 3 x 2 (streaming, 2 reader processes per rank: global batches of
    6 and 5, one per shard, the 5 shared 2 + 3)."""
    settings = {**SETTINGS, "batch_size": 3, "gpus": 2}
    out = tmp_path / "results" / "models" / "tiny"
    outputs = Bag(
        checkpoint=str(out / "checkpoint.pt"),
        best=str(out / "best.pt"),
        history=str(out / "history.tsv"),
        curve=str(out / "loss_curve.png"),
    )
    smk = Bag(
        input=Bag(train=[str(p) for p in shards["train"]], val=[str(p) for p in shards["val"]]),
        output=outputs,
        params=Bag(model=settings),
        config={"runtime": {"num_workers": 2}},
        wildcards=Bag(model="tiny", dataset="tiny"),
        log=[str(tmp_path / "train.log")],
        threads=2,
    )
    with kept_logging():
        runpy.run_path(str(SCRIPT), init_globals={"snakemake": smk}, run_name="__main__")
    log = Path(smk.log[0]).read_text()
    assert re.search(r"rank 0/2 on cpu \(gloo backend\)", log) and re.search(
        r"rank 1/2 on cpu \(gloo backend\)", log
    )
    assert (
        "rank 0/2 colorize.train INFO: epoch 3/3" in log
        and "rank 1/2 colorize.train INFO" not in log
    )
    assert all(Path(p).stat().st_size > 0 for p in outputs.values())
    ckpt = torch.load(outputs.checkpoint, weights_only=True)
    assert ckpt["train_config"]["gpus"] == 2 and ckpt["card"]["processes"] == 2
    assert ckpt["card"]["global_batch_size"] == 6

    single_process({**settings, "num_workers": 2}, shards, tmp_path / "single")
    assert_same_training(Path(outputs.checkpoint), tmp_path / "single" / "checkpoint.pt")


def test_a_killed_run_takes_its_processes_and_resumes_where_it_stopped(shards, tmp_path):
    """SIGKILL of the torchrun launcher after its first checkpoint: its processes die with it;
    the rerun continues after the saved epoch and ends where an uninterrupted run does."""
    settings = {**SETTINGS, "batch_size": 2, "gpus": 2, "in_memory": True}
    out = tmp_path / "ddp"
    cmd = torchrun_command(
        2, "colorize.train", entry_args({**settings, "epochs": 100000}, shards, out)
    )
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, f"no checkpoint after {STARTUP_S} s"
            time.sleep(0.05)
        ranks = children(proc.pid)
        time.sleep(0.3)  # a few more epochs: the kill may land mid-epoch or mid-save
    finally:
        os.killpg(
            proc.pid, signal.SIGKILL
        )  # the launcher and nothing else: its processes have their own sessions
        proc.wait()
    assert len(ranks) == 2, ranks
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in ranks):
        assert time.monotonic() < deadline, f"training processes {ranks} outlived their launcher"
        time.sleep(0.05)
    killed = torch.load(out / "checkpoint.pt", weights_only=True)
    done = killed["epoch"]

    rerun = subprocess.run(
        torchrun_command(
            2, "colorize.train", entry_args({**settings, "epochs": done + 1}, shards, out)
        ),
        capture_output=True,
        text=True,
        timeout=STARTUP_S + 120,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"continuing at epoch {done + 1}" in rerun.stderr
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert [r["epoch"] for r in resumed["history"]] == list(range(1, done + 2))
    assert resumed["history"][:done] == killed["history"]

    single_process({**settings, "epochs": done + 1}, shards, tmp_path / "single")
    assert_same_training(out / "checkpoint.pt", tmp_path / "single" / "checkpoint.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_launchers_rendezvous_as_two_nodes_would(shards, tmp_path):
    """The README's several-nodes recipe on one machine: two torchrun launchers with
    --nnodes=2 --node_rank=0/1 and the first node's address (what SLURM_NNODES, SLURM_NODEID
    and the job's first host give), one process each, train as one process with the global batch."""
    settings = {**SETTINGS, "batch_size": 2, "gpus": 2, "epochs": 2}
    out, port = tmp_path / "nodes", free_port()
    launchers = []
    for node in (0, 1):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            f"--node_rank={node}",
            "--nproc_per_node=1",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            "-m",
            "colorize.train",
            *entry_args(settings, shards, out),
        ]
        launchers.append(
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        )
    logs = [p.communicate(timeout=STARTUP_S + 120)[1] for p in launchers]
    assert [p.returncode for p in launchers] == [0, 0], "\n".join(logs)
    assert (
        "rank 0/2 on cpu (gloo backend)" in logs[0] and "rank 1/2 on cpu (gloo backend)" in logs[1]
    )

    single_process(settings, shards, tmp_path / "single")
    assert_same_training(out / "checkpoint.pt", tmp_path / "single" / "checkpoint.pt")


# --- one SLURM job with 2 GPUs ---------------------------------------------------------------

SLURM_TIMEOUT_S = 900


@pytest.mark.slurm
@pytest.mark.slow
def test_a_two_gpu_model_trains_as_one_slurm_job_with_both_gpus_and_both_ranks(
    slurm_cluster, tmp_path, monkeypatch
):
    """profiles/slurm + slurm-local, a model with gpus: 2: its train job is one SLURM job that
    SLURM gives 2 GPUs (gres/gpu=2 in sacct's AllocTRES), one task that starts torchrun, and
    the job's log shows both ranks (on the local cluster's fake GPUs torch finds no CUDA: gloo)."""
    monkeypatch.delenv("COLORIZE_DEVICE")  # as a user's job: the device is the job's to find
    make_good_images(tmp_path / "photos", n=8, size=(48, 64))
    work = copy_workflow(tmp_path / "work")
    config = tiny_config("../photos")
    config["models"] = {"unet": {**config["models"]["unet"], "gpus": 2}}
    write_config(work, config)
    target = "results/tiny/models/unet/checkpoint.pt"
    cmd = [
        "timeout",
        "-s",
        "INT",
        "-k",
        "30",
        str(SLURM_TIMEOUT_S),
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(REPO / "profiles/slurm"),
        "--profile",
        str(REPO / "profiles/slurm-local"),
        "--workflow-profile",
        "none",
        target,
        "--configfile",
        "config.yaml",
    ]
    proc = subprocess.run(
        cmd,
        cwd=work,
        env=slurm_cluster.env(),
        capture_output=True,
        text=True,
        timeout=SLURM_TIMEOUT_S + 60,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-8000:]

    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    info = _slurm_job_info(submitted, slurm_cluster.has_sacct)
    train_jobs = [j for j in submitted if info[j].get("Comment", "").startswith("rule_train")]
    assert len(train_jobs) == 1, info
    job = info[train_jobs[0]]
    assert job["State"] == "COMPLETED" and "gres/gpu=2" in job["AllocTRES"].split(","), job

    train_log = (work / "results/tiny/logs/train/unet.log").read_text()
    for rank in (0, 1):
        assert re.search(rf"rank {rank}/2 on \S+ \((gloo|nccl) backend\)", train_log), train_log[
            -4000:
        ]
    history = torch.load(work / target, weights_only=True)["history"]
    assert [r["epoch"] for r in history] == [1, 2]
