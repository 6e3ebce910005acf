"""Training on several GPUs at once: PyTorch's DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc_per_node=N -m colorize.train ...`` starts N copies of one training, one per
GPU (or N CPU processes); each learns from its environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``) who it is. Everything that knows about that lives here: joining the process
group (``joined``: nccl on CUDA, gloo on the CPU), who this process is (``rank``,
``world_size``, ``is_main``), sums across processes (``all_sum``, ``batch_weight``), the model
wrapper (``wrap``), ordering file writes (``main_first``) and the command that starts the
processes (``torchrun_command``, ``run_torchrun``). In one process without torchrun every
function is the identity and nothing is communicated.

Which samples each process takes is ``data.rank_spans``: every process draws the same
epoch order and takes its fixed part of each global batch, so N processes with ``batch_size``
B take the same optimiser steps as one process with batch N x B.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from .device import pick_device

log = logging.getLogger("colorize.distributed")

PR_SET_PDEATHSIG = 1  # Linux prctl(2): a signal for this process when its parent dies


def world_size() -> int:
    """Processes training together (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's place among them, 0..world_size-1 (0 without torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes files and logs progress."""
    return rank() == 0


def launched() -> tuple[int, int]:
    """(rank, world size) as torchrun told this process in its environment; (0, 1) without it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _local_device(requested: str | None) -> torch.device:
    """This process's device: GPU number LOCAL_RANK of its node when CUDA works, else the CPU."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(
            local_rank
        )  # first: pick_device's test must not put every process on GPU 0
    device = pick_device(requested)
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(
            f"process {local_rank} of this node wants GPU {local_rank}, but the node has "
            f"{torch.cuda.device_count()}: start at most that many (--nproc_per_node, gpus:)"
        )
    return torch.device("cuda", local_rank)


def _die_with_parent(sig: int) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies, so that a killed
    launcher (the job's script, torchrun) takes its processes with it instead of leaving them
    training and holding GPUs (torchrun starts each in a session of its own). Elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), sig)


@contextlib.contextmanager
def joined(requested: str | None = None) -> Iterator[torch.device]:
    """Join the process group that torchrun set up (when it did) for the duration; yields this
    process's device. Backend nccl on CUDA, gloo on the CPU, chosen after the device so that a
    node whose GPUs do not work still trains (N CPU processes)."""
    rank_, world = launched()
    if world == 1:
        yield pick_device(requested)
        return
    _die_with_parent(signal.SIGKILL)
    device = _local_device(requested)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    log.info("rank %d/%d on %s (%s backend)", rank_, world, device, backend)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process got here (nothing to wait for in one process)."""
    if world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block before the others do, e.g. to compute and cache a file that the
    others then read instead of writing it too."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Each value summed over all processes (float64: sums of a few million per-image values)."""
    if world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def batch_weight(n: int, device: torch.device) -> float:
    """The factor on this process's mean loss over its ``n`` samples that makes DDP's gradient
    (the mean over processes) the gradient of the whole global batch's mean loss, also when the
    last batch of an epoch splits unevenly: n x world_size / (samples of the global batch)."""
    if world_size() == 1:
        return 1.0
    return n * world_size() / all_sum([n], device)[0]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as DDP trains it (gradients all-reduced in backward); the model itself in one process.

    BatchNorm keeps per-process statistics (of the per-GPU batch), as in torchvision's
    references; SyncBatchNorm would need a GPU and adds a collective per layer.
    """
    if world_size() == 1:
        return model
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def torchrun_command(nproc: int, module: str, args: Sequence[str]) -> list[str]:
    """``torchrun --standalone --nproc_per_node=nproc -m module args``: one node, a local
    rendezvous on a free port. Run as ``python -m torch.distributed.run`` (what the
    ``torchrun`` command is) so that the processes use this interpreter and its packages."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        module,
        *args,
    ]


def run_torchrun(
    nproc: int, module: str, args: Sequence[str], *, threads: int, echo: Callable[[str], None]
) -> None:
    """Start ``nproc`` processes of ``python -m module args`` under torchrun and wait for them.

    ``threads``: CPU threads for all of them together (each gets an equal share, at least 1).
    Every line they print goes to ``echo`` as it comes, so one log holds all ranks. A failed
    process ends them all (torchrun's doing), and so does the end of this one (torchrun gets a
    SIGTERM and stops its processes); raises ``CalledProcessError``.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // nproc)), "PYTHONUNBUFFERED": "1"}
    cmd = torchrun_command(nproc, module, args)
    log.info("starting %d processes: %s", nproc, " ".join(cmd[:7]) + " ...")
    with subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=functools.partial(_die_with_parent, signal.SIGTERM),
    ) as proc:
        for line in proc.stdout:
            echo(line)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
