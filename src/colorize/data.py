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

Several training processes (DDP, ``colorize.distributed``): each builds its dataset with its
``rank`` and the ``world_size``; every process draws the same order and augmentation, cuts the
stream into global batches of ``world_size x batch_size`` and keeps its fixed part of each
(``rank_spans``), so the processes together take exactly the steps of one process with the
global batch, and each cuts (crops, normalises, hands to the GPU) only its own samples. A
streaming rank skips shards that hold none of its samples, but reads whole the shards it
takes a part of (``read_shard``: the one fast read).

Speed (``benchmarks/NOTES.md``): samples are cut a batch at a time (``augment_batch``), never
one tensor operation per sample: a pass draws its whole permutation, crop offsets and flips at
once, CPU batches are cut with numpy slices and converted and normalised in three passes over
the batch, and a GPU-resident set cuts a whole batch with one gather per tensor. Workers hand
over finished batches (``iterate_batches``), not samples to collate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .colorspace import normalize_ab_, normalize_l_
from .shards import read_shard, shard_info, to_float32

log = logging.getLogger("colorize.data")

Sample = tuple[torch.Tensor, torch.Tensor]
Draws = tuple[
    np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None
]  # order, tops, lefts, flips
SAMPLE_CHUNK = 64  # samples cut together when iterating sample by sample


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


def draw_augmentation(
    n: int, size: int, rng: np.random.Generator | None, crop_size: int | None, flip: bool
) -> Draws:
    """One pass over ``n`` images: (order, tops, lefts, flips), drawn at once from ``rng``.

    ``rng`` None (validation): stored order, centred crops, no flips. ``tops``/``lefts`` are
    None when there is nothing to crop, ``flips`` when nothing is flipped.
    """
    order = np.arange(n) if rng is None else rng.permutation(n)
    c = crop_size or 0
    tops = lefts = flips = None
    if c and c < size:
        if rng is None:
            tops = lefts = np.full(n, (size - c) // 2)
        else:
            tops, lefts = rng.integers(0, size - c + 1, n), rng.integers(0, size - c + 1, n)
    if flip and rng is not None:
        flips = rng.random(n) < 0.5
    return order, tops, lefts, flips


def _normalised(
    L: torch.Tensor,
    ab: torch.Tensor,
    out_L: torch.Tensor | None = None,
    out_ab: torch.Tensor | None = None,
) -> Sample:
    """float16 (B, c, c), (B, 2, c, c) Lab -> float32 (B, 1, c, c) L_norm, (B, 2, c, c) ab_norm.

    ``colorspace.normalize_l_`` / ``normalize_ab_``, in place on the float32 copy.
    """
    b, c = L.shape[0], L.shape[-1]
    out_L = (
        torch.empty((b, 1, c, c), dtype=torch.float32, device=L.device) if out_L is None else out_L
    )
    out_ab = (
        torch.empty((b, 2, c, c), dtype=torch.float32, device=L.device)
        if out_ab is None
        else out_ab
    )
    return normalize_l_(out_L.copy_(L.unsqueeze(1))), normalize_ab_(out_ab.copy_(ab))


def augment_batch(
    L: torch.Tensor,
    ab: torch.Tensor,
    idx,
    tops=None,
    lefts=None,
    flips=None,
    crop_size: int | None = None,
    shared: bool = False,
) -> Sample:
    """Cut a batch: images ``idx`` of stored ``L`` (N, H, W) and ``ab`` (N, 2, H, W), cropped at
    (``tops``, ``lefts``) to ``crop_size`` (None: whole) and mirrored where ``flips``.

    Returns normalised float32 (B, 1, c, c), (B, 2, c, c) on the stored tensors' device. On
    the CPU the crops are numpy slices (a torch op per sample costs more than the copy); on a
    GPU one gather per tensor cuts the whole batch. ``shared`` (CPU): allocate the result in shared
    memory (a DataLoader worker hands it to the main process without another copy).
    """
    c = crop_size if (crop_size and tops is not None) else L.shape[-1]
    if L.device.type != "cpu":
        return _normalised(*_gather_crops(L, ab, idx, tops, lefts, flips, c))
    Lc, abc = _slice_crops(L.numpy(), ab.numpy(), idx, tops, lefts, flips, c)
    return _normalised_cpu(Lc, abc, shared)


def _normalised_cpu(Lc: np.ndarray, abc: np.ndarray, shared: bool) -> Sample:
    """``_normalised`` for numpy float16 crops, single-threaded: OpenCV's F16C conversion and
    numpy's in-place arithmetic (torch's thread pool on per-batch ops stalls on a busy machine,
    and DataLoader workers run one thread each anyway). Bit-identical to the torch version."""
    b, c = Lc.shape[0], Lc.shape[-1]
    out_L = torch.empty((b, 1, c, c), dtype=torch.float32)
    out_ab = torch.empty((b, 2, c, c), dtype=torch.float32)
    if shared:  # a DataLoader worker: hand the batch over without another copy
        out_L.share_memory_()
        out_ab.share_memory_()
    L32, ab32 = out_L.numpy(), out_ab.numpy()
    to_float32(Lc, L32)
    normalize_l_(L32)
    to_float32(abc, ab32)
    normalize_ab_(ab32)
    return out_L, out_ab


def _gather_crops(L: torch.Tensor, ab: torch.Tensor, idx, tops, lefts, flips, c: int):
    """Crops of a batch by one gather per tensor (any device; the GPU path)."""
    dev, size = L.device, L.shape[-1]
    i = torch.as_tensor(idx, device=dev)
    b = len(i)
    if tops is None:  # whole images: a row gather, then mirror the flipped ones
        Lc, abc = L.index_select(0, i), ab.index_select(0, i)
        if flips is not None:
            f = torch.as_tensor(flips, device=dev)
            Lc = torch.where(f[:, None, None], Lc.flip(-1), Lc)
            abc = torch.where(f[:, None, None, None], abc.flip(-1), abc)
        return Lc, abc
    r = torch.arange(c, device=dev)
    rows = (
        (torch.as_tensor(tops, device=dev)[:, None] + r) if tops is not None else r[None]
    ).expand(b, c)
    cols = (
        (torch.as_tensor(lefts, device=dev)[:, None] + r) if lefts is not None else r[None]
    ).expand(b, c)
    if flips is not None:
        cols = torch.where(torch.as_tensor(flips, device=dev)[:, None], cols.flip(1), cols)
    plane = size * size
    pix = rows[:, :, None] * size + cols[:, None, :]  # (B, c, c): offsets inside one plane
    Lc = L.reshape(-1)[i[:, None, None] * plane + pix]
    chan = (i[:, None] * 2 + torch.arange(2, device=dev))[:, :, None, None] * plane  # (B, 2, 1, 1)
    abc = ab.reshape(-1)[chan + pix[:, None]]
    return Lc, abc


def _slice_crops(L: np.ndarray, ab: np.ndarray, idx, tops, lefts, flips, c: int):
    """Crops of a batch by numpy slicing, one copy per image (the CPU path)."""
    idx = np.asarray(idx)
    Lc = np.empty((len(idx), c, c), L.dtype)
    abc = np.empty((len(idx), 2, c, c), ab.dtype)
    for k, j in enumerate(idx):
        t = 0 if tops is None else int(tops[k])
        left = 0 if lefts is None else int(lefts[k])
        if flips is not None and flips[k]:
            cols = slice(left + c - 1, left - 1 if left else None, -1)
        else:
            cols = slice(left, left + c)
        Lc[k] = L[j, t : t + c, cols]
        abc[k] = ab[j, :, t : t + c, cols]
    return Lc, abc


def _cut(L, ab, draws: Draws, start: int, stop: int, crop_size, shared: bool = False) -> Sample:
    order, tops, lefts, flips = draws
    sl = slice(start, stop)
    pick = lambda a: None if a is None else a[sl]  # noqa: E731
    return augment_batch(L, ab, order[sl], pick(tops), pick(lefts), pick(flips), crop_size, shared)


def _samples(L, ab, draws: Draws, crop_size) -> Iterator[Sample]:
    """The pass's samples one by one, cut ``SAMPLE_CHUNK`` at a time."""
    n = len(draws[0])
    for start in range(0, n, SAMPLE_CHUNK):
        L_norm, ab_norm = _cut(L, ab, draws, start, min(start + SAMPLE_CHUNK, n), crop_size)
        yield from zip(L_norm, ab_norm)


def _worker_slice() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def rank_spans(
    total: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    *,
    drop_last: bool = False,
    lockstep: bool = True,
) -> list[tuple[int, int]]:
    """One process's [start, stop) positions of a stream of ``total`` samples, one per batch.

    The stream is cut into global batches of ``world_size x batch_size``; process ``rank``
    takes its share of each, as even as sizes allow (a last, short global batch of m samples
    gives each process m / world_size, rounded). One process: batches of ``batch_size``, the
    last one short unless ``drop_last``. ``lockstep`` (training: every process must take every
    optimiser step) leaves out a last global batch too small for every process to get a
    sample (fewer than ``world_size``); otherwise a process just skips a batch it has no
    share of.
    """
    spans = []
    step = batch_size * world_size
    for begin in range(0, total, step):
        m = min(step, total - begin)
        if (drop_last and m < step) or (lockstep and m < world_size):
            break
        lo, hi = begin + rank * m // world_size, begin + (rank + 1) * m // world_size
        if hi > lo:
            spans.append((lo, hi))
    return spans


def _init_sampling(
    ds, shard_paths, crop_size, train: bool, flip: bool, seed: int, rank: int, world_size: int
) -> list[tuple[int, int]]:
    """The settings both datasets share, set on ``ds``; returns each shard's (count, size)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of {world_size} processes")
    ds.shard_paths = [Path(p) for p in shard_paths]
    ds.crop_size = crop_size or None
    ds.train = train
    ds.flip = flip and train
    ds.seed = int(seed)
    ds.epoch = 0
    ds.rank, ds.world_size = int(rank), int(world_size)
    info = [shard_info(p) for p in ds.shard_paths]
    ds.image_size = _check_sizes(
        [p for p, (n, _) in zip(ds.shard_paths, info) if n],
        [size for n, size in info if n],
        ds.crop_size,
    )
    return info


class ShardDataset(IterableDataset):
    """Streams ``(L_norm, ab_norm)`` samples, one whole shard in memory at a time (per worker).

    ``train=True``: shard order and image order shuffled per epoch, random crop, random flip.
    ``train=False``: shards and images in stored order, centre crop (if ``crop_size``), no flip.
    Empty shards are skipped. ``rank``/``world_size``: one of several training processes,
    whose ``batches`` are its share of each global batch (``__iter__`` yields all samples).
    """

    def __init__(
        self,
        shard_paths: Sequence[str | Path],
        *,
        crop_size: int | None = None,
        train: bool = True,
        flip: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__()
        info = _init_sampling(self, shard_paths, crop_size, train, flip, seed, rank, world_size)
        self.counts = [n for n, _ in info]

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

    def worker_shards(self, worker: int = 0, n_workers: int = 1) -> list[int]:
        """The shards DataLoader worker ``worker`` of ``n_workers`` reads this epoch, in order."""
        return self.shard_order()[worker::n_workers]

    def _pass(self, i: int) -> tuple[torch.Tensor, torch.Tensor, Draws]:
        """(L, ab, draws) of shard ``i`` this epoch: the whole shard, read at once."""
        shard = read_shard(self.shard_paths[i])
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        draws = draw_augmentation(len(shard), shard.L.shape[-1], rng, self.crop_size, self.flip)
        return torch.from_numpy(shard.L), torch.from_numpy(shard.ab), draws

    def __iter__(self) -> Iterator[Sample]:
        for i in self.worker_shards(*_worker_slice()):
            yield from _samples(*self._pass(i), self.crop_size)

    def batches(self, batch_size: int, drop_last: bool = False) -> Iterator[Sample]:
        """This worker's samples as batches (the order ``__iter__`` yields), across shard ends;
        with several processes this one's share of each global batch (``rank_spans``). One
        shard in memory at a time; a shard holding none of this process's samples is not read."""
        shared = get_worker_info() is not None
        shards = self.worker_shards(*_worker_slice())
        spans = iter(
            rank_spans(
                sum(self.counts[i] for i in shards),
                batch_size,
                self.rank,
                self.world_size,
                drop_last=drop_last,
                lockstep=self.train,
            )
        )
        span = next(spans, None)
        parts: list[Sample] = []
        start = 0  # stream position of the shard's first sample
        for i in shards:
            stop = start + self.counts[i]
            if span is not None and span[0] < stop:
                L, ab, draws = self._pass(i)
                while span is not None and span[0] < stop:
                    lo, hi = max(span[0], start), min(span[1], stop)
                    parts.append(_cut(L, ab, draws, lo - start, hi - start, self.crop_size, shared))
                    if span[1] > stop:  # the batch goes on in the next shard
                        break
                    yield _join(parts)
                    parts, span = [], next(spans, None)
                del L, ab
            start = stop


def _join(parts: list[Sample]) -> Sample:
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


class _ShardBatches(IterableDataset):
    """``ShardDataset.batches`` as a dataset, so DataLoader workers hand over whole batches."""

    def __init__(self, dataset: ShardDataset, batch_size: int, drop_last: bool):
        super().__init__()
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last

    def __iter__(self) -> Iterator[Sample]:
        return self.dataset.batches(self.batch_size, self.drop_last)


class InMemoryDataset(IterableDataset):
    """The same samples as ``ShardDataset``, from all shards loaded once (float16, as stored).

    ``device``: where the stored images live (``"cuda"`` keeps the whole set on the GPU and
    augments there). Shuffles globally (not per shard) in training. ``batches()`` yields
    ready-made batches without a DataLoader, the fast path for a resident set. With several
    processes (``rank``/``world_size``) each holds the whole set (the global shuffle draws from
    all of it) and its ``batches`` are its share of each global batch.
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
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__()
        info = _init_sampling(self, shard_paths, crop_size, train, flip, seed, rank, world_size)
        nonempty = [(p, n) for p, (n, _) in zip(self.shard_paths, info) if n]
        s = self.image_size or 0
        total = sum(n for _, n in nonempty)
        # Filled one shard at a time: the host holds one shard, never two copies of the set.
        self.L = torch.empty((total, s, s), dtype=torch.float16, device=device)
        self.ab = torch.empty((total, 2, s, s), dtype=torch.float16, device=device)
        at = 0
        for path, n in nonempty:
            shard = read_shard(path)
            self.L[at : at + n].copy_(torch.from_numpy(shard.L))
            self.ab[at : at + n].copy_(torch.from_numpy(shard.ab))
            at += n
            del shard
        log.info(
            "loaded %d images from %d shards into %s memory",
            total,
            len(self.shard_paths),
            self.L.device,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.L.shape[0])

    @property
    def sample_size(self) -> int | None:
        return self.crop_size or self.image_size

    def _draws(self) -> Draws:
        rng = np.random.default_rng([self.seed, self.epoch]) if self.train else None
        return draw_augmentation(len(self), self.image_size or 0, rng, self.crop_size, self.flip)

    def __iter__(self) -> Iterator[Sample]:
        worker, n_workers = _worker_slice()
        order, tops, lefts, flips = self._draws()
        pick = lambda a: None if a is None else a[worker::n_workers]  # noqa: E731
        draws = (pick(order), pick(tops), pick(lefts), pick(flips))
        yield from _samples(self.L, self.ab, draws, self.crop_size)

    def batches(self, batch_size: int, drop_last: bool = False) -> Iterator[Sample]:
        """Batches (Bx1xHxW, Bx2xHxW) built on the set's device, in the order ``__iter__`` yields;
        with several processes this one's share of each global batch (``rank_spans``)."""
        draws = self._draws()
        if self.L.device.type != "cpu":  # the pass's indices go to the GPU once, not per batch
            draws = tuple(
                None if a is None else torch.as_tensor(a, device=self.L.device) for a in draws
            )
        for start, stop in rank_spans(
            len(draws[0]),
            batch_size,
            self.rank,
            self.world_size,
            drop_last=drop_last,
            lockstep=self.train,
        ):
            yield _cut(self.L, self.ab, draws, start, stop, self.crop_size)


def make_dataset(
    shard_paths: Sequence[str | Path],
    *,
    crop_size: int | None = None,
    train: bool = True,
    flip: bool = True,
    seed: int = 0,
    in_memory: bool = False,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> ShardDataset | InMemoryDataset:
    """``InMemoryDataset`` (on ``device``) when ``in_memory``, else a streaming ``ShardDataset``;
    ``rank``/``world_size``: this process's share of several (see the module's docstring)."""
    common = dict(
        crop_size=crop_size, train=train, flip=flip, seed=seed, rank=rank, world_size=world_size
    )
    if in_memory:
        return InMemoryDataset(shard_paths, device=device, **common)
    return ShardDataset(shard_paths, **common)


def batches_per_epoch(
    dataset: ShardDataset | InMemoryDataset, batch_size: int, num_workers: int = 0
) -> int:
    """How many batches ``iterate_batches`` yields this epoch (each worker ends on its own short
    batch); with several processes, this one's (the same for every process in training)."""
    if isinstance(dataset, InMemoryDataset) or num_workers <= 1:
        streams = [len(dataset)]
    else:
        streams = [
            sum(dataset.counts[i] for i in dataset.worker_shards(w, num_workers))
            for w in range(num_workers)
        ]
    return sum(
        len(rank_spans(n, batch_size, dataset.rank, dataset.world_size, lockstep=dataset.train))
        for n in streams
    )


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
        _ShardBatches(dataset, batch_size, drop_last),
        batch_size=None,  # the dataset yields finished batches
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,  # fresh workers each epoch see set_epoch()
        prefetch_factor=2 if num_workers else None,
    )
    return iter(loader)
