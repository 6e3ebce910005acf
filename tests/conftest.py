"""Shared fixtures (a checkpoint file, shards, a folder of every kind of bad input) and the test hooks.

The plain helpers they are built from live in helpers.py; the image-file helpers are importable
from here too, where the workflow and SLURM tests take them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import (  # noqa: F401 (re-exported: the workflow tests import them from here)
    TINY_UNET,
    colour_photo,
    make_bad_images,
    make_good_images,
    make_odd_but_good_images,
    save,
    save_checkpoint,
    tiny_model,
    write_shard,
)

REPO = Path(__file__).resolve().parents[1]

# Fixtures shared across modules: a local HTTP server, and the SLURM cluster.
pytest_plugins = ["http_server", "slurm_cluster"]


def pytest_configure(config):
    """The ``fast_path`` marker groups the checks that a fast path gives the bits of the plain code."""
    config.addinivalue_line(
        "markers",
        "fast_path: a fast path checked bit for bit against the straightforward code it replaced "
        "(pytest -m fast_path tests)",
    )


@pytest.fixture(scope="session")
def checkpoint_file(tmp_path_factory) -> Path:
    """A tiny untrained U-Net saved as training saves one (for the command line's --model)."""
    return save_checkpoint(tiny_model(), TINY_UNET, tmp_path_factory.mktemp("model") / "best.pt")


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> dict:
    """Small shards of smooth colourful 32x32 images: two train (6 + 5), one val (3), one empty."""
    d = tmp_path_factory.mktemp("shards")
    return {
        "train": [
            write_shard(d / "train-000.h5", 6, seed=1),
            write_shard(d / "train-001.h5", 5, seed=2),
        ],
        "val": [write_shard(d / "val-000.h5", 3, seed=3)],
        "empty": write_shard(d / "val-001.h5", 0),
    }


@pytest.fixture(scope="session")
def effnet_shards(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """(train, val) shard lists for the effnet_unet runs: 8 and 4 smooth 32x32 images."""
    d = tmp_path_factory.mktemp("effnet_shards")
    return [write_shard(d / "train-000.h5", 8, size=32)], [
        write_shard(d / "val-000.h5", 4, size=32, seed=1)
    ]


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    """A folder of good colour photos plus every kind of bad input and a duplicate."""
    root = tmp_path / "photos"
    make_good_images(root)
    make_odd_but_good_images(root / "odd")
    make_bad_images(root / "bad")
    (root / "zz_copy_of_good_01.jpg").write_bytes((root / "good_01.jpg").read_bytes())
    return root


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slurm`` need a SLURM cluster: they run when one answers, or when
    COLORIZE_START_SLURM=1 lets the session fixture start the local one (.ci/run sets it).
    Otherwise they are deselected (not skipped), with a note saying how to run them."""
    import os

    slurm = [item for item in items if item.get_closest_marker("slurm")]
    if not slurm or os.environ.get("COLORIZE_START_SLURM") == "1":
        return
    from slurm_cluster import sinfo_node_states

    if sinfo_node_states() is not None:
        return
    config.hook.pytest_deselected(items=slurm)
    items[:] = [item for item in items if not item.get_closest_marker("slurm")]
    print(
        f"\n{len(slurm)} slurm test(s) deselected: no SLURM cluster answers; "
        "run them with COLORIZE_START_SLURM=1 (starts the local cluster, needs root)."
    )
