"""Deterministic train/val/test split and shard assignment from a stable hash of the relative path.

The same relative path always lands in the same (split, shard), whatever else is in the set,
so adding one image changes exactly one shard, and a rerun reproduces the split exactly.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def _unit(key: str) -> float:
    """A stable pseudo-random number in [0, 1) from a string (sha256, not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def assign_split(relpath: str, val_fraction: float, test_fraction: float, seed: int = 0) -> str:
    u = _unit(f"split:{seed}:{relpath}")
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def assign_shard(relpath: str, n_shards: int, seed: int = 0) -> int:
    return int(_unit(f"shard:{seed}:{relpath}") * n_shards)


def assign(relpath: str, *, val_fraction: float, test_fraction: float, shards: dict, seed: int = 0):
    """-> (split, shard index) for one relative path; ``shards`` maps split -> shard count."""
    split = assign_split(relpath, val_fraction, test_fraction, seed)
    return split, assign_shard(relpath, int(shards[split]), seed)

