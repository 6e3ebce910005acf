"""Session fixture ``slurm_cluster``: a SLURM cluster for tests marked ``slurm``.

* If ``sinfo`` answers (a cluster is up: CI ran ``.ci/slurm/start``, or a
  developer's own), that cluster is used and left running.
* Else, with ``COLORIZE_START_SLURM=1`` in the environment, the local
  single-node cluster is started with ``.ci/slurm/start`` (needs root) and
  stopped with ``.ci/slurm/stop`` at the end of the session.
* Else the test fails with a message saying how to enable it.

Use it from a test module with::

    from slurm_cluster import slurm_cluster  # noqa: F401  (pytest fixture)

(``tests/`` is on ``sys.path`` under pytest's default rootdir import mode.)
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START = REPO / ".ci" / "slurm" / "start"
STOP = REPO / ".ci" / "slurm" / "stop"
# Account that .ci/slurm/start creates for root in the local cluster.
LOCAL_ACCOUNT = "colorize"
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}

HOW_TO_ENABLE = (
    "This test needs a SLURM cluster, but `sinfo` does not answer.\n"
    "Either start the local single-node cluster first (as root):\n"
    "    .ci/slurm/start        # ... run the tests ...;  .ci/slurm/stop\n"
    "or let the tests start and stop it themselves:\n"
    "    COLORIZE_START_SLURM=1 python -m pytest -m slurm\n"
    "or deselect these tests with  -m 'not slurm'."
)


@dataclass(frozen=True)
class SlurmCluster:
    """What the tests need to know about the cluster in use."""

    started_here: bool  # True: this session started it and will stop it
    partition: str | None  # partition to submit to (None: cluster default)
    account: str | None  # account to submit with (None: let the plugin guess)
    has_sacct: bool  # sacct answers (slurmdbd accounting)

    def env(self) -> dict[str, str]:
        """Environment for running Snakemake with profiles/slurm on it."""
        env = dict(os.environ)
        for var, value in (
            ("COLORIZE_SLURM_PARTITION", self.partition),
            ("COLORIZE_SLURM_ACCOUNT", self.account),
        ):
            if value:
                env[var] = value
            else:
                env.pop(var, None)
        return env


def _run(cmd: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    """Run a SLURM client command; never hangs (client timeouts can be long)."""
    try:
        return subprocess.run(
            ["timeout", "-k", "5", str(int(timeout)), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 124, "", str(exc))


def sinfo_node_states() -> list[str] | None:
    """Node states reported by sinfo, or None if no cluster answers."""
    if shutil.which("sinfo") is None or shutil.which("scontrol") is None:
        return None
    # `scontrol ping` fails at once without a slurmctld; sinfo retries ~9 s.
    if "is UP" not in _run(["scontrol", "ping"], timeout=10).stdout:
        return None
    res = _run(["sinfo", "-h", "-N", "-o", "%T"], timeout=10)
    if res.returncode != 0:
        return None
    return [s.strip().rstrip("*~#!%$@^-") for s in res.stdout.split()]


def _default_partition() -> str | None:
    res = _run(["sinfo", "-h", "-o", "%P"])
    for name in res.stdout.split():
        if name.endswith("*"):
            return name[:-1]
    return None


def _has_sacct() -> bool:
    return shutil.which("sacct") is not None and (
        _run(["sacct", "-n", "-X", "-j", "1"]).returncode == 0
    )


def _local_account(has_sacct: bool) -> str | None:
    if not has_sacct:
        return None
    res = _run(
        [
            "sacctmgr",
            "-n",
            "-P",
            "list",
            "assoc",
            f"user={getpass.getuser()}",
            "format=account",
        ]
    )
    accounts = {a.strip() for a in res.stdout.split()}
    return LOCAL_ACCOUNT if LOCAL_ACCOUNT in accounts else None


def _describe(started_here: bool) -> SlurmCluster:
    has_sacct = _has_sacct()
    return SlurmCluster(
        started_here=started_here,
        partition=os.environ.get("COLORIZE_SLURM_PARTITION") or _default_partition(),
        account=os.environ.get("COLORIZE_SLURM_ACCOUNT") or _local_account(has_sacct),
        has_sacct=has_sacct,
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running SLURM cluster (see module docstring); yields SlurmCluster."""
    started_here = False
    states = sinfo_node_states()
    if states is None:
        if os.environ.get("COLORIZE_START_SLURM") != "1":
            pytest.fail(HOW_TO_ENABLE, pytrace=False)
        res = subprocess.run([str(START)], capture_output=True, text=True, timeout=1200)
        if res.returncode != 0:
            pytest.fail(
                f"{START} failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}",
                pytrace=False,
            )
        started_here = True
        states = sinfo_node_states() or []
    if not USABLE_NODE_STATES.intersection(states):
        pytest.fail(
            f"A SLURM cluster answers, but no node is usable (states: {states}); "
            "see `sinfo -R`. A cluster from .ci/slurm/start can be restarted with "
            ".ci/slurm/stop && .ci/slurm/start.",
            pytrace=False,
        )
    try:
        yield _describe(started_here)
    finally:
        if started_here:
            res = subprocess.run([str(STOP)], capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                print(f"{STOP} failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")
