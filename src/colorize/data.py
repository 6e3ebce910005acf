"""Training and validation samples from Lab HDF5 shards, without holding the whole set in memory.

``ShardDataset`` streams: it reads one WHOLE shard at a time (``read_shard``: one read per
dataset, the fast path), shuffles the images within it, and visits the shards in a new order
each epoch. With ``DataLoader(num_workers=W)`` worker ``k`` takes every W-th shard of that
order, so workers never share a shard or an image, and each holds one shard in memory.

``InMemoryDataset`` is the same interface over all shards loaded once (float16, as stored),
optionally onto the GPU, with a global shuffle; use it when the set fits in memory.

Both yield ``(L_norm, ab_norm)``: float32 tensors 1xHxW and 2xHxW, normalised with
``colorspace.normalize_l`` / ``normalize_ab``. Training samples are randomly cropped to
``crop_size`` (when smaller than the stored size) and flipped left-right half the time;
validation samples are centre-cropped (or whole, with ``crop_size=None``) and never flipped.
All randomness comes from ``(seed, epoch, shard)``, so an epoch is the same whatever the
number of workers, and a resumed run sees the same data as an uninterrupted one.
Call ``set_epoch(epoch)`` before each epoch (and keep ``persistent_workers=False``, the
default, so that workers pick the new epoch up).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .colorspace import normalize_ab, normalize_l
from .shards import read_shard

log = logging.getLogger("colorize.data")

Sample = tuple[torch.Tensor, torch.Tensor]


def shard_info(path) -> tuple[int, int]:
    """(number of images, image size) of a shard, from its dataset shapes (cheap: no image read)."""
    with h5py.File(path, "r") as f:
        n, h, w = f["L"].shape
    if h != w:
        raise ValueError(f"{path}: images are {h}x{w}; shards hold square images")
    return int(n), int(h)


def shards_fingerprint(paths: Sequence[str | Path]) -> str:
    """A short hash of which images the shards hold (file names, sizes, source sha256s), in order.

    Lets a resumed training check that it continues on the same data; reads no pixels.
    """
    digest = hashlib.sha256()
    for path in paths:
        with h5py.File(path, "r") as f:
            n, h, w = f["L"].shape
            digest.update(f"{Path(path).name}|{n}|{h}x{w}|".encode())
            for s in f["sha256"][...]:
                digest.update(s if isinstance(s, bytes) else s.encode())
    return digest.hexdigest()[:16]


def _check_sizes(paths: Sequence[Path], sizes: Sequence[int], crop_size: int | None) -> int | None:
    """The one stored image size of non-empty shards; crop_size must fit inside it."""
    distinct = sorted(set(sizes))
    if len(distinct) > 1:
        examples = {s: str(p) for p, s in zip(paths, sizes)}
        raise ValueError(f"shards hold different image sizes {distinct}, e.g. {examples}")
    size = distinct[0] if distinct else None
    if crop_size and size is not None and crop_size > size:
        raise ValueError(f"crop_size {crop_size} is larger than the stored image size {size}")
    return size


def augment(L: torch.Tensor, ab: torch.Tensor, rng: np.random.Generator | None, crop_size: int | None, flip: bool):
    """Crop (random with ``rng``, centred without) and maybe flip one image; L is HxW, ab 2xHxW.

    Returns normalised float32 (1xcxc, 2xcxc). Works on CPU or GPU tensors of any float dtype.
    """
    h, w = L.shape[-2:]
    c = crop_size or 0
    if c and (c < h or c < w):
        if rng is None:
            top, left = (h - c) // 2, (w - c) // 2
        else:
            top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        L = L[..., top : top + c, left : left + c]
        ab = ab[..., top : top + c, left : left + c]
    if flip and rng is not None and rng.random() < 0.5:
        L = torch.flip(L, dims=(-1,))
        ab = torch.flip(ab, dims=(-1,))
    L_norm = normalize_l(L.float()).unsqueeze(0).contiguous()
    ab_norm = normalize_ab(ab.float()).contiguous()
    return L_norm, ab_norm


def _worker_slice() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class ShardDataset(IterableDataset):
    """Streams ``(L_norm, ab_norm)`` samples, one whole shard in memory at a time (per worker).

    ``train=True``: shard order and image order shuffled per epoch, random crop, random flip.
    ``train=False``: shards and images in stored order, centre crop (if ``crop_size``), no flip.
    Empty shards are skipped.
    """

    def __init__(
        self,
        shard_paths: Sequence[str | Path],
        *,
        crop_size: int | None = None,
        train: bool = True,
        flip: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.shard_paths = [Path(p) for p in shard_paths]
        self.crop_size = crop_size or None
        self.train = train
        self.flip = flip and train
        self.seed = int(seed)
        self.epoch = 0
        info = [shard_info(p) for p in self.shard_paths]
        self.counts = [n for n, _ in info]
        self.image_size = _check_sizes(
            [p for p, (n, _) in zip(self.shard_paths, info) if n], [s for n, s in info if n], self.crop_size
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sum(self.counts)

    @property
    def sample_size(self) -> int | None:
        """Height (= width) of the yielded samples."""
        return self.crop_size or self.image_size

    def shard_order(self) -> list[int]:
        """Indices of the shards in the order this epoch visits them (all workers together)."""
        order = np.arange(len(self.shard_paths))
        if self.train:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        return [int(i) for i in order if self.counts[i] > 0]

    def __iter__(self) -> Iterator[Sample]:
        worker, n_workers = _worker_slice()
        for i in self.shard_order()[worker::n_workers]:
            shard = read_shard(self.shard_paths[i])
            L, ab = torch.from_numpy(shard.L), torch.from_numpy(shard.ab)
            if self.train:
                rng = np.random.default_rng([self.seed, self.epoch, i])
                images = rng.permutation(len(shard))
            else:
                rng, images = None, range(len(shard))
            for j in images:
                yield augment(L[j], ab[j], rng, self.crop_size, self.flip)
            del shard, L, ab


class InMemoryDataset(IterableDataset):
    """The same samples as ``ShardDataset``, from all shards loaded once (float16, as stored).

    ``device``: where the stored images live (``"cuda"`` keeps the whole set on the GPU and
    augments there). Shuffles globally (not per shard) in training. ``batches()`` yields
    ready-made batches without a DataLoader, the fast path for a resident set.
    """

    def __init__(
        self,
        shard_paths: Sequence[str | Path],
        *,
        crop_size: int | None = None,
        train: bool = True,
        flip: bool = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        self.shard_paths = [Path(p) for p in shard_paths]
        self.crop_size = crop_size or None
        self.train = train
        self.flip = flip and train
        self.seed = int(seed)
        self.epoch = 0
        shards = [read_shard(p) for p in self.shard_paths]
        nonempty = [(p, s) for p, s in zip(self.shard_paths, shards) if len(s)]
        self.image_size = _check_sizes([p for p, _ in nonempty], [s.L.shape[-1] for _, s in nonempty], self.crop_size)
        if nonempty:
            self.L = torch.from_numpy(np.concatenate([s.L for _, s in nonempty])).to(device)
            self.ab = torch.from_numpy(np.concatenate([s.ab for _, s in nonempty])).to(device)
        else:
            self.L = torch.zeros((0, 0, 0), dtype=torch.float16, device=device)
            self.ab = torch.zeros((0, 2, 0, 0), dtype=torch.float16, device=device)
        log.info("loaded %d images from %d shards into %s memory", len(self.L), len(shards), self.L.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.L.shape[0])

    @property
    def sample_size(self) -> int | None:
        return self.crop_size or self.image_size

    def _order_and_rng(self):
        if not self.train:
            return np.arange(len(self)), None
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.permutation(len(self)), rng

    def __iter__(self) -> Iterator[Sample]:
        worker, n_workers = _worker_slice()
        order, rng = self._order_and_rng()
        for j in order[worker::n_workers]:
            yield augment(self.L[j], self.ab[j], rng, self.crop_size, self.flip)

    def batches(self, batch_size: int, drop_last: bool = False) -> Iterator[Sample]:
        """Batches (Bx1xHxW, Bx2xHxW) built on the set's device, in the order ``__iter__`` yields."""
        order, rng = self._order_and_rng()
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if drop_last and len(idx) < batch_size:
                return
            pairs = [augment(self.L[j], self.ab[j], rng, self.crop_size, self.flip) for j in idx]
            yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def make_dataset(
    shard_paths: Sequence[str | Path],
    *,
    crop_size: int | None = None,
    train: bool = True,
    flip: bool = True,
    seed: int = 0,
    in_memory: bool = False,
    device: str | torch.device = "cpu",
) -> ShardDataset | InMemoryDataset:
    """``InMemoryDataset`` (on ``device``) when ``in_memory``, else a streaming ``ShardDataset``."""
    if in_memory:
        return InMemoryDataset(shard_paths, crop_size=crop_size, train=train, flip=flip, seed=seed, device=device)
    return ShardDataset(shard_paths, crop_size=crop_size, train=train, flip=flip, seed=seed)


def batches_per_epoch(dataset: ShardDataset | InMemoryDataset, batch_size: int, num_workers: int = 0) -> int:
    """How many batches ``iterate_batches`` yields this epoch (each worker ends on its own short batch)."""
    if isinstance(dataset, InMemoryDataset) or num_workers <= 1:
        return math.ceil(len(dataset) / batch_size)
    order = dataset.shard_order()
    per_worker = [sum(dataset.counts[i] for i in order[w::num_workers]) for w in range(num_workers)]
    return sum(math.ceil(n / batch_size) for n in per_worker)


def iterate_batches(
    dataset: ShardDataset | InMemoryDataset,
    batch_size: int,
    *,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> Iterator[Sample]:
    """Batches for one epoch: ``InMemoryDataset.batches`` directly, else a DataLoader with workers.

    With workers each yields its own last, partial batch, so an epoch may hold up to
    ``num_workers`` short batches.
    """
    if isinstance(dataset, InMemoryDataset):
        return dataset.batches(batch_size, drop_last=drop_last)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,  # fresh workers each epoch see set_epoch()
        prefetch_factor=2 if num_workers else None,
    )
    return iter(loader)
