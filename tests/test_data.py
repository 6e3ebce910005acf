"""colorize.data: shard samples normalised, seeded shuffles, crops and flips, workers, in-memory batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from colorize.colorspace import denormalize_ab, denormalize_l, normalize_ab, normalize_l
from colorize.data import (
    InMemoryDataset,
    ShardDataset,
    _gather_crops,
    _slice_crops,
    batches_per_epoch,
    draw_augmentation,
    iterate_batches,
)
from colorize.shards import ShardWriter, read_shard

SIZE = 32  # the side of the images in the shards fixture and in the coded shards

torch.set_num_threads(1)


def write_coded_shard(path: Path, ids: list[int], size: int = SIZE) -> Path:
    """Images whose pixels say where they come from: L = 3x, a = 3y, b = 10 * image id.

    Exact in float16, so a crop's offset, flip and source image can be read back from it.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    with ShardWriter(path, size, split="train") as w:
        for i in ids:
            lab = np.stack([3 * x, 3 * y, np.full_like(x, 10 * i)], -1)
            w.append(lab, f"img{i}.png", str(i))
    return path


def coded_shards(tmp_path: Path, sizes: list[int], size: int = 24) -> list[Path]:
    """Coded shards train-0.h5, train-1.h5, ... holding ``sizes[j]`` images each, ids counting on across them."""
    paths, first = [], 0
    for j, n in enumerate(sizes):
        paths.append(
            write_coded_shard(tmp_path / f"train-{j}.h5", list(range(first, first + n)), size)
        )
        first += n
    return paths


def decode(L_norm: torch.Tensor, ab_norm: torch.Tensor) -> tuple[int, int, int, bool]:
    """(image id, top, left, flipped) of a sample cut from a coded image."""
    L = np.rint(denormalize_l(L_norm[0].numpy().astype(np.float64))).astype(int)
    ab = np.rint(denormalize_ab(ab_norm.numpy().astype(np.float64))).astype(int)
    flipped = L[0, 0] > L[0, -1]
    left = (L[0, -1] if flipped else L[0, 0]) // 3
    c = L.shape[-1]
    expected_row = 3 * (left + np.arange(c))
    assert (L == (expected_row[::-1] if flipped else expected_row)[None, :]).all()
    assert (ab[0] == ab[0][:, :1]).all() and (ab[1] == ab[1][0, 0]).all()
    return int(ab[1][0, 0]) // 10, int(ab[0][0, 0]) // 3, int(left), bool(flipped)


def test_validation_samples_are_the_stored_images_normalised(shards):
    ds = ShardDataset(shards["val"], train=False)
    stored = read_shard(shards["val"][0])
    samples = list(ds)
    assert len(samples) == len(ds) == 3
    for (L_norm, ab_norm), L, ab in zip(samples, stored.L, stored.ab):
        assert L_norm.dtype == ab_norm.dtype == torch.float32
        assert L_norm.shape == (1, SIZE, SIZE) and ab_norm.shape == (2, SIZE, SIZE)
        np.testing.assert_allclose(
            L_norm[0].numpy(), normalize_l(L.astype(np.float32)), rtol=0, atol=1e-6
        )
        np.testing.assert_allclose(
            ab_norm.numpy(), normalize_ab(ab.astype(np.float32)), rtol=0, atol=1e-6
        )
        assert -1 <= L_norm.min() and L_norm.max() <= 1 and ab_norm.abs().max() <= 1


def test_training_order_is_shuffled_per_epoch_and_seeded(tmp_path):
    paths = [
        write_coded_shard(tmp_path / f"train-{k}.h5", list(range(5 * k, 5 * k + 5)))
        for k in range(3)
    ]
    ds = ShardDataset(paths, train=True, flip=False, seed=7)

    def ids(epoch, seed=7):
        ds.seed = seed
        ds.set_epoch(epoch)
        return [decode(*s)[0] for s in ds]

    assert sorted(ids(0)) == list(range(15))  # every image once per epoch
    assert ids(0) == ids(0)  # seeded
    assert ids(0) != ids(1) and ids(1) != ids(2)  # a new order each epoch
    assert ids(0, seed=8) != ids(0, seed=7)


def test_random_crop_and_flip_training_centre_crop_validation(tmp_path):
    path = write_coded_shard(tmp_path / "train-0.h5", list(range(8)))
    crop = 12
    ds = ShardDataset([path], crop_size=crop, train=True, seed=0)
    seen = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        for L_norm, ab_norm in ds:
            assert L_norm.shape == (1, crop, crop) and ab_norm.shape == (2, crop, crop)
            image, top, left, flipped = decode(L_norm, ab_norm)
            assert 0 <= image < 8 and 0 <= top <= SIZE - crop and 0 <= left <= SIZE - crop
            seen.append((top, left, flipped))
    flips = [f for _, _, f in seen]
    assert 0.25 < np.mean(flips) < 0.75
    assert len({(top, left) for top, left, _ in seen}) > 20  # offsets vary

    val = ShardDataset([path], crop_size=crop, train=False)
    centre = (SIZE - crop) // 2
    assert [decode(*s) for s in val] == [(i, centre, centre, False) for i in range(8)]
    with pytest.raises(ValueError, match="crop_size"):
        ShardDataset([path], crop_size=SIZE + 1)


def test_workers_read_disjoint_shards_and_empty_shards_are_skipped(tmp_path):
    paths = [
        write_coded_shard(tmp_path / f"train-{k}.h5", list(range(4 * k, 4 * k + 4)))
        for k in range(3)
    ]
    paths.insert(1, write_coded_shard(tmp_path / "train-empty.h5", []))
    ds = ShardDataset(paths, crop_size=16, seed=3)
    ds.set_epoch(5)
    single = sorted(decode(*s) for s in ds)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    multi = sorted(decode(*s) for s in loader)
    assert len(single) == 12 and [s[0] for s in single] == list(range(12))
    assert multi == single  # same samples (seeded by shard), each image once
    batches = list(iterate_batches(ds, 5, num_workers=2))
    assert sum(len(L) for L, _ in batches) == 12 and len(batches) == batches_per_epoch(
        ds, 5, num_workers=2
    )

    only_empty = ShardDataset([paths[1]])
    assert len(only_empty) == 0 and list(only_empty) == [] and only_empty.sample_size is None


def test_in_memory_dataset_matches_streaming(tmp_path):
    paths = [
        write_coded_shard(tmp_path / f"train-{k}.h5", list(range(3 * k, 3 * k + 3)))
        for k in range(2)
    ]
    paths.append(write_coded_shard(tmp_path / "train-empty.h5", []))
    stream = ShardDataset(paths, train=False)
    memory = InMemoryDataset(paths, train=False)
    assert len(memory) == len(stream) == 6
    for (a, b), (c, d) in zip(stream, memory):
        assert torch.equal(a, c) and torch.equal(b, d)
    train_mem = InMemoryDataset(paths, crop_size=8, train=True, seed=1)
    train_mem.set_epoch(2)
    batches = list(train_mem.batches(4))
    assert [tuple(L.shape) for L, _ in batches] == [(4, 1, 8, 8), (2, 1, 8, 8)]
    assert sorted(decode(L[i], ab[i])[0] for L, ab in batches for i in range(len(L))) == list(
        range(6)
    )
    assert sorted(decode(*s)[0] for s in train_mem) == list(range(6))


# --- the fast paths: one gather per tensor (GPU), whole batches --------------------------------


@pytest.mark.fast_path
@pytest.mark.parametrize("crop", [None, 12, 31])
@pytest.mark.parametrize("train", [True, False])
def test_gpu_gather_equals_cpu_slices(crop, train):
    """The GPU path (one gather per tensor), run on CPU tensors, cuts exactly what the CPU path cuts."""
    L = torch.rand(9, 32, 32).half()
    ab = torch.rand(9, 2, 32, 32).half()
    rng = np.random.default_rng(3) if train else None
    order, tops, lefts, flips = draw_augmentation(9, 32, rng, crop, flip=True)
    c = crop if (crop and tops is not None) else 32
    a = _gather_crops(L, ab, order, tops, lefts, flips, c)
    b = _slice_crops(L.numpy(), ab.numpy(), order, tops, lefts, flips, c)
    assert torch.equal(a[0], torch.from_numpy(b[0])) and torch.equal(a[1], torch.from_numpy(b[1]))


@pytest.mark.fast_path
def test_batches_are_the_samples_of_iter_in_order(tmp_path):
    paths = coded_shards(tmp_path, [7, 0, 5, 9])
    for ds in (
        ShardDataset(paths, crop_size=10, seed=4),
        InMemoryDataset(paths, crop_size=10, seed=4),
    ):
        ds.set_epoch(2)
        samples = list(ds)
        batches = list(ds.batches(4))
        assert [len(b[0]) for b in batches] == [4] * 5 + [1]
        flat = [(L, ab) for Lb, abb in batches for L, ab in zip(Lb, abb)]
        assert len(flat) == len(samples) == 21
        assert all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(samples, flat)
        )
        assert [len(b[0]) for b in ds.batches(4, drop_last=True)] == [4] * 5
