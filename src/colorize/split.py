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
    """The split (train, val or test) of one relative path: a stable hash, so adding a photo moves no other."""
    u = _unit(f"split:{seed}:{relpath}")
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def assign_shard(relpath: str, n_shards: int, seed: int = 0) -> int:
    """The shard index (0..n_shards-1) of one relative path within its split, by a stable hash."""
    return int(_unit(f"shard:{seed}:{relpath}") * n_shards)


def assign(relpath: str, *, val_fraction: float, test_fraction: float, shards: dict, seed: int = 0):
    """-> (split, shard index) for one relative path; ``shards`` maps split -> shard count."""
    split = assign_split(relpath, val_fraction, test_fraction, seed)
    return split, assign_shard(relpath, int(shards[split]), seed)


def assign_stratified(
    relpaths_by_source: dict[str, list[str]],
    *,
    val_fraction: float,
    test_fraction: float,
    shards: dict,
    seed: int = 0,
) -> dict[str, tuple[str, int]]:
    """-> {relpath: (split, shard index)} with each source split on its own (issue 20): of a
    source's n photos, ranked by the same stable hash as ``assign_split``, the first
    round(n * test_fraction) go to test and the next round(n * val_fraction) to val, at least
    one each when the fraction is above 0 and the source has 3 photos or more, so every source
    has its own rows in the test split. The price of exact per-source counts: adding a photo to
    a source may move up to two of its photos across a split boundary (``assign`` moves none).
    Shards are assigned as ``assign`` does."""
    out = {}
    for relpaths in relpaths_by_source.values():
        ranked = sorted(relpaths, key=lambda r: (_unit(f"split:{seed}:{r}"), r))
        n = len(ranked)
        n_test = round(n * test_fraction)
        n_val = round(n * val_fraction)
        if n >= 3:
            n_test = max(n_test, 1 if test_fraction > 0 else 0)
            n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_val = min(n_val, n - n_test)
        for i, rel in enumerate(ranked):
            split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[rel] = (split, assign_shard(rel, int(shards[split]), seed))
    return out
