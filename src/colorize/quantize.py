"""Colour as a class: quantised ab bins, soft-encoding, class rebalancing, annealed-mean decoding.

After Zhang, Isola and Efros, "Colorful Image Colorization" (ECCV 2016), section 2. Regression
with MSE averages the plausible colours of an object into a washed-out brown-gray; predicting
a *distribution* over ab bins and decoding it with the annealed mean keeps colours vivid.
Everything here is in Lab units (ab about -128..127); the model's ``ab / AB_SCALE``
normalisation is applied by the caller (``models.ClassificationHead``).

The bins (``gamut_bins``)
    A grid of step ``BIN_SIZE`` = 10 with centres at multiples of 10. A bin is kept when some
    sRGB colour falls in its cell, i.e. has it as its nearest grid centre. The ab gamut of sRGB
    over all L is the projection of the RGB cube's image in Lab, which equals the projection of
    the cube's *surface* (a line of constant ab through an interior colour leaves the solid
    through its surface), so it suffices to convert every 8-bit colour on the cube's six faces
    (6 x 256 x 256, with ``colorspace.rgb_to_lab``, OpenCV, D65) and collect the cells they round
    to. That gives 262 bins (the same as all 2^24 8-bit colours; 512 or 2048 levels per face
    edge give the same set). Nothing is downloaded. Zhang et al. keep 313 bins (their
    ``pts_in_hull.npy``); that set extends beyond the sRGB gamut of this conversion, and no
    sRGB criterion reproduces it: keeping only bins whose *centre* is an sRGB colour for some L
    gives about 229, and every bin within one grid step of the gamut 290. The cell criterion
    is the one under which rounding any real pixel to the grid always lands on a kept bin.

Soft-encoding (``soft_encode``)
    Each pixel's target is a distribution on its ``SOFT_NEIGHBOURS`` = 5 nearest bins, weighted
    by a Gaussian of the distance with ``SOFT_SIGMA`` = 5 and normalised to sum 1.

Prior and rebalancing (``ab_prior``, ``smooth_prior``, ``rebalance_weights``)
    The prior is the share of training pixels whose nearest bin is q, smoothed with a Gaussian
    of ``PRIOR_SIGMA`` = 5 over the bin centres. The weight of bin q is
    ``w_q ∝ 1 / ((1 - λ) p̃_q + λ / Q)`` with λ = ``REBALANCE_LAMBDA`` = 0.5, normalised so
    that ``E_p̃[w] = Σ_q p̃_q w_q = 1``: rare (saturated) colours count more, common
    (desaturated) ones less, and the loss keeps the scale of an unweighted one. λ = 1 gives
    w = 1 everywhere (no rebalancing); λ → 0 gives ``w_q = 1 / (Q p̃_q)`` (full rebalancing).
    Each pixel's loss is weighted by the w of its nearest bin.

Annealed mean (``annealed_mean``)
    ``f_T(z) = softmax(log z / T)``, then the expectation of the bin centres under f_T. With
    logits that is ``softmax(logits / T)``. T = 1 is the mean of the predicted distribution
    (safe, desaturated); T → 0 is its mode (vivid, patchy); ``TEMPERATURE`` = 0.38 is the paper's
    compromise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .colorspace import rgb_to_lab
from .files import atomic_torch_save

log = logging.getLogger("colorize.quantize")

BIN_SIZE = 10.0  # ab grid step (Lab units)
SOFT_NEIGHBOURS = 5  # soft-encoding: nearest bins per pixel
SOFT_SIGMA = 5.0  # soft-encoding: Gaussian width (Lab units)
PRIOR_SIGMA = 5.0  # Gaussian smoothing of the empirical prior (Lab units)
REBALANCE_LAMBDA = 0.5  # mix of prior and uniform in the rebalancing weights (1 = no rebalancing)
TEMPERATURE = 0.38  # annealed-mean temperature (1 = mean, -> 0 = mode)
_GRID_HALF = 13  # grid cells -13..13 (+-130): covers every ab a float16 shard can hold for sRGB


def _rgb_cube_surface(levels: int = 256) -> np.ndarray:
    """Every colour on the six faces of the RGB cube, ``levels`` per edge, as (N, 3) float32 in [0, 1]."""
    v = np.linspace(0.0, 1.0, levels, dtype=np.float32)
    u, w = (x.ravel() for x in np.meshgrid(v, v, indexing="ij"))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            cols = [u, w]
            cols.insert(axis, np.full_like(u, value))
            faces.append(np.stack(cols, -1))
    return np.concatenate(faces)


@lru_cache(maxsize=4)
def _gamut_bins(bin_size: float) -> np.ndarray:
    ab = rgb_to_lab(_rgb_cube_surface()[:, None])[:, 0, 1:]
    cells = np.unique(np.rint(ab / bin_size).astype(np.int64), axis=0)  # sorted by (a, b)
    centres = (cells * bin_size).astype(np.float32)
    centres.setflags(write=False)
    return centres


def gamut_bins(bin_size: float = BIN_SIZE) -> np.ndarray:
    """(Q, 2) float32 ab centres (Lab units) of the in-gamut bins, sorted by (a, b); Q = 262 for size 10."""
    return _gamut_bins(float(bin_size))


@lru_cache(maxsize=4)
def _grid_lookup(bin_size: float) -> np.ndarray:
    centres = _gamut_bins(bin_size)
    g = np.arange(-_GRID_HALF, _GRID_HALF + 1) * bin_size
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    nearest = ((grid[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    table = nearest.reshape(len(g), len(g)).astype(np.int64)
    table.setflags(write=False)
    return table


def quantize(ab: np.ndarray, bin_size: float = BIN_SIZE) -> np.ndarray:
    """Index of the nearest bin of each ab pair (``ab`` is (..., 2), Lab units) -> (...) int64.

    Rounds to the grid, then looks the cell up: exact for every sRGB colour (its cell is a
    kept bin); a value outside the gamut goes to the kept bin nearest its cell's centre.
    """
    cell = np.clip(
        np.rint(np.asarray(ab, dtype=np.float32) / bin_size).astype(np.int64),
        -_GRID_HALF,
        _GRID_HALF,
    )
    return _grid_lookup(float(bin_size))[cell[..., 0] + _GRID_HALF, cell[..., 1] + _GRID_HALF]


# --- targets ---------------------------------------------------------------------------------


_CANDIDATES = 12  # soft_encode: bins pre-selected per 1x1 ab cell, of which the k nearest are kept


@lru_cache(maxsize=8)
def _candidate_table(centres_key: bytes, n: int, device: str = "cpu") -> torch.Tensor:
    """For every integer (a, b) in +-130: the ``_CANDIDATES`` bins nearest to it, (261, 261, C) int64,
    built once per bin set and device."""
    centres = np.frombuffer(centres_key, dtype=np.float32).reshape(n, 2)
    g = np.arange(-130, 131, dtype=np.float32)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 2)
    d2 = ((grid - centres[None]) ** 2).sum(-1)
    c = min(_CANDIDATES, n)
    table = np.argpartition(d2, c - 1, axis=1)[:, :c]
    return torch.from_numpy(table.reshape(len(g), len(g), c).astype(np.int64)).to(device)


def soft_encode(
    ab: torch.Tensor, centres: torch.Tensor, k: int = SOFT_NEIGHBOURS, sigma: float = SOFT_SIGMA
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft targets of ab (Bx2xHxW, Lab units) on bins ``centres`` (Qx2): (indices, weights), each BxkxHxW.

    ``indices`` are the k nearest bins, nearest first; ``weights`` a Gaussian of their distance,
    summing to 1 over k. Sparse, so the loss never builds a BxQxHxW target. For speed the
    search runs over the 12 bins nearest to the pixel's rounded ab (a table, built once)
    instead of all Q, 8x faster on a CPU; it finds the same k bins as a search over all Q
    up to ties in distance (tests/test_quantize.py checks this on random colours).
    """
    if not 1 <= k <= min(_CANDIDATES, len(centres)):
        raise ValueError(f"soft_encode: k must be 1..{min(_CANDIDATES, len(centres))}, got {k}")
    b, _, h, w = ab.shape
    key = (
        centres.detach().float().cpu().numpy().tobytes()
    )  # centres live on the CPU in the loss: no copy
    table = _candidate_table(key, len(centres), str(ab.device))
    centres = centres.float().to(ab.device)
    pixels = ab.float().permute(0, 2, 3, 1).reshape(-1, 2)
    cell = (pixels.round().clamp(-130, 130) + 130).long()
    candidates = table[cell[:, 0], cell[:, 1]]  # (N, C)
    d2 = (pixels[:, None, :] - centres[candidates]).square().sum(-1)
    d2, pick = torch.topk(d2, k, dim=1, largest=False)  # sorted, nearest first
    idx = candidates.gather(1, pick)
    weights = torch.softmax(-d2 / (2.0 * sigma**2), dim=1)
    return (
        idx.reshape(b, h, w, k).permute(0, 3, 1, 2),
        weights.reshape(b, h, w, k).permute(0, 3, 1, 2),
    )


# --- prior and rebalancing -------------------------------------------------------------------


def ab_counts(
    shard_paths: Sequence[str | Path], bin_size: float = BIN_SIZE, batch: int = 256
) -> np.ndarray:
    """(Q,) float64 number of pixels whose nearest bin is q, over every image of the shards."""
    from .shards import iter_ab  # h5py: 0.1 s of start-up that inference does not need

    counts = np.zeros(len(gamut_bins(bin_size)), np.float64)
    for path in shard_paths:
        for ab in iter_ab(path, batch):
            counts += np.bincount(
                quantize(np.moveaxis(ab, 1, -1), bin_size).ravel(), minlength=len(counts)
            )
    return counts


def smooth_prior(counts: np.ndarray, centres: np.ndarray, sigma: float = PRIOR_SIGMA) -> np.ndarray:
    """Counts per bin -> probabilities (Q,) smoothed by a Gaussian of ``sigma`` over the bin centres.

    ``sigma`` 0 only normalises. All-zero counts give the uniform distribution.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        return np.full(len(counts), 1.0 / len(counts))
    p = counts / counts.sum()
    if sigma > 0:
        d2 = ((centres[:, None, :].astype(np.float64) - centres[None].astype(np.float64)) ** 2).sum(
            -1
        )
        p = np.exp(-d2 / (2.0 * sigma**2)) @ p
    return p / p.sum()


def rebalance_weights(prior: np.ndarray, lam: float = REBALANCE_LAMBDA) -> np.ndarray:
    """(Q,) weights ``∝ 1 / ((1 - lam) prior + lam / Q)``, normalised so that ``Σ prior * w = 1``.

    ``lam`` in (0, 1]: 1 gives all ones; near 0, ``1 / (Q prior)`` (needs every prior > 0).
    """
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"rebalance lambda must be in (0, 1], got {lam}")
    prior = np.asarray(prior, dtype=np.float64)
    w = 1.0 / ((1.0 - lam) * prior + lam / len(prior))
    return w / float((prior * w).sum())


def ab_prior(
    shard_paths: Sequence[str | Path], cache_path: str | Path | None = None, fingerprint: str = ""
) -> np.ndarray:
    """The smoothed prior (Q,) of the training shards, computed once and cached in ``cache_path``.

    The cache (a ``torch.save`` of tensors and strings, readable with ``weights_only=True``)
    is reused only when its ``fingerprint`` (of the shards) and bins match.
    """
    centres = gamut_bins()
    if cache_path is not None and Path(cache_path).exists():
        try:
            cached = torch.load(cache_path, map_location="cpu", weights_only=True)
            same_bins = torch.equal(cached["bins"], torch.from_numpy(centres.copy()))
            if cached.get("fingerprint") == fingerprint and same_bins:
                return cached["prior"].numpy()
            log.info("%s is for other shards or bins; recomputing the ab prior", cache_path)
        except Exception as exc:  # unreadable cache: recompute
            log.warning("cannot read %s (%s); recomputing the ab prior", cache_path, exc)
    counts = ab_counts(shard_paths)
    prior = smooth_prior(counts, centres)
    log.info(
        "ab prior from %d pixels of %d shard(s): %d of %d bins seen; most common bin %s (%.1f %%)",
        int(counts.sum()), len(shard_paths), int((counts > 0).sum()), len(counts),
        centres[int(prior.argmax())].tolist(), 100 * prior.max(),
    )  # fmt: skip
    if cache_path is not None:
        obj = {"fingerprint": fingerprint, "bins": torch.from_numpy(centres.copy()),
               "counts": torch.from_numpy(counts), "prior": torch.from_numpy(prior)}  # fmt: skip
        atomic_torch_save(obj, cache_path)
    return prior


# --- decoding and loss -----------------------------------------------------------------------


def annealed_mean(
    logits: torch.Tensor, centres: torch.Tensor, temperature: float = TEMPERATURE
) -> torch.Tensor:
    """BxQxHxW logits -> Bx2xHxW ab (units of ``centres``): the mean of the bins under softmax(logits / T).

    ``temperature`` 0 returns the mode's bin centre exactly.
    """
    centres = centres.to(device=logits.device, dtype=torch.float32)
    logits = logits.float()
    if temperature <= 0:
        return centres[logits.argmax(1)].permute(0, 3, 1, 2)
    probs = torch.softmax(logits / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probs, centres)


def rebalanced_cross_entropy(
    logits: torch.Tensor,
    ab: torch.Tensor,
    centres: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Zhang et al.'s loss, per pixel mean: ``-w(q*) Σ_q Z_q log softmax(logits)_q``.

    ``ab``: Bx2xHxW in Lab units; ``Z``: its soft encoding; ``q*``: its nearest bin; ``weights``
    (Q,) rebalancing weights (None: all 1, plain soft cross-entropy).
    """
    idx, target = soft_encode(ab, centres)
    log_p = torch.log_softmax(logits.float(), dim=1).gather(1, idx)
    per_pixel = -(target * log_p).sum(1)
    if weights is not None:
        per_pixel = per_pixel * weights.to(per_pixel.device, torch.float32)[idx[:, 0]]
    return per_pixel.mean()


def uniform_prior(n: int | None = None) -> np.ndarray:
    """The uniform distribution over ``n`` bins (default: all in-gamut bins); a model's prior until training sets it."""
    n = len(gamut_bins()) if n is None else n
    return np.full(n, 1.0 / n)
