"""Prediction, the numeric core every consumer shares: L at the model's working size in, ab out,
recombined with the full-resolution L (as richzhang/colorization's ``postprocess_tens``).

For each photo: Lab L of the full-resolution image; resized (area) to the model's square
working size and normalised; a batch of those through the model gives normalised ab at the
working size; ab is denormalised, resized (bilinear) back to the *original* size and
recombined with the *original* L. So the output has the input's size and, up to 8-bit
rounding and gamut clipping, the input's lightness: only colour is invented.

The file pipeline (``infer.colorize_files``), the evaluation drivers (``evaluate``) and the
report's grids build on these functions; none of them is imported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import cv2
import numpy as np

from .colorspace import (
    DEFAULT_SIZE,
    denormalize_ab,
    lab_to_rgb,
    lightness,
    normalize_l,
    unpack_lightness,
)
from .imageio import as_rgb_uint8

if TYPE_CHECKING:  # a model is a torch.nn.Module, or a runtime.OnnxColorizer (no PyTorch needed)
    import torch


@runtime_checkable
class ArrayColorizer(Protocol):
    """A colorizer on numpy arrays, without PyTorch (``runtime.OnnxColorizer``): normalised L
    (B, S, S) in, normalised ab (B, 2, S, S) out, on ``device_type``."""

    device_type: str

    def predict_normalized(self, L_norm: np.ndarray) -> np.ndarray: ...


def model_device(model) -> torch.device | str:
    """The device a model runs on: a torch.device, or "cpu" for an ``OnnxColorizer``."""
    if isinstance(model, ArrayColorizer):
        return model.device_type
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def working_l(L: np.ndarray, size: int) -> np.ndarray:
    """Full-size L (HxW, 0..100, or uint16 from ``colorspace.pack_lightness``) -> normalised L
    at ``size`` x ``size`` (area when shrinking)."""
    h, w = L.shape
    if (h, w) == (size, size):
        small = L
    else:
        interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
        small = cv2.resize(L, (size, size), interpolation=interp)
    return normalize_l(unpack_lightness(small).astype(np.float32, copy=False))


def predict_ab(model, L_norm: np.ndarray) -> np.ndarray:
    """Normalised L batch (B, S, S) -> ab in Lab units (B, 2, S, S) float32, on the model's device."""
    if isinstance(model, ArrayColorizer):
        return denormalize_ab(model.predict_normalized(L_norm))
    import torch

    from .device import autocast, to_device_format

    device = model_device(model)
    x = torch.from_numpy(np.ascontiguousarray(L_norm, dtype=np.float32)[:, None])
    if device.type == "cuda":
        x = x.pin_memory()
    x = to_device_format(x, device, non_blocking=True)
    with torch.inference_mode(), autocast(device):
        ab_norm = model.ab_from_output(model(x))
    return denormalize_ab(ab_norm.float()).cpu().numpy()


def ab_to_size(ab: np.ndarray, height: int, width: int) -> np.ndarray:
    """ab (2, s, s) -> (height, width, 2), bilinear (half-pixel centres, as torch's align_corners=False)."""
    hwc = np.ascontiguousarray(np.moveaxis(ab, 0, -1), dtype=np.float32)
    if hwc.shape[:2] == (height, width):
        return hwc
    return cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)


def recombine(L_full: np.ndarray, ab_small: np.ndarray, order: str = "RGB") -> np.ndarray:
    """Original-size L (HxW) + working-size ab (2, s, s) -> HxWx3 uint8 RGB (or ``order`` BGR)
    at the original size."""
    return lab_to_rgb(L_full, ab_small, keep_lightness=True, order=order)  # ab resized band by band


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass when the caller does not say: 16 on CUDA; 4 on CPU, where
    batches of 16 measured about 2x slower per image than batches of 1-8 (cache misses)."""
    return 16 if str(getattr(device, "type", device)).split(":")[0] == "cuda" else 4


def batch_size_for(model: torch.nn.Module, batch_size: int | None) -> int:
    """``batch_size``, or when None the ``default_batch_size`` of the model's device."""
    return int(batch_size or default_batch_size(model_device(model)))


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def colorize_arrays(
    model: torch.nn.Module,
    rgbs: Sequence[np.ndarray],
    size: int = DEFAULT_SIZE,
    batch_size: int | None = None,
) -> list[np.ndarray]:
    """Colorize in-memory images (HxW, HxWx1, HxWx3 or HxWx4 uint8, any sizes) -> HxWx3 uint8 RGB each.

    Only the lightness of the input is used; the output keeps the input's size and L. Puts the
    model in eval mode; ``batch_size`` None is ``default_batch_size`` of the model's device.
    """
    model.eval()
    batch_size = batch_size_for(model, batch_size)
    out: list[np.ndarray] = []
    for sl in _batches(len(rgbs), batch_size):
        L_full = [lightness(as_rgb_uint8(rgb), "RGB") for rgb in rgbs[sl]]
        ab = predict_ab(model, np.stack([working_l(L, size) for L in L_full]))
        out.extend(recombine(L, a) for L, a in zip(L_full, ab))
    return out


def predict_l_batch(model: torch.nn.Module, L: np.ndarray, size: int | None = None) -> np.ndarray:
    """L batch (B, H, W) in Lab units -> predicted ab (B, 2, H, W), via the working size ``size``."""
    b, h, w = L.shape
    if size is None or (h, w) == (size, size):
        return predict_ab(model, normalize_l(L))
    ab = predict_ab(model, np.stack([working_l(x, size) for x in L]))
    return np.stack([np.moveaxis(ab_to_size(a, h, w), -1, 0) for a in ab])


def predict_shard(
    model: torch.nn.Module, shard_path, size: int | None = None, batch_size: int | None = None
) -> np.ndarray:
    """Predicted ab (N, 2, H, W) float32 Lab units for every image of a shard, at the shard's size.

    ``size`` None (default) feeds the shard's own size to the model; another value resizes L to
    ``size`` and the prediction back, as full-resolution inference does.
    """
    from .shards import (  # h5py: 0.1 s of start-up that file inference does not need
        iter_batches,
        shard_info,
    )

    model.eval()
    batch_size = batch_size_for(model, batch_size)
    parts = [predict_l_batch(model, L, size) for L, _, _ in iter_batches(shard_path, batch_size)]
    if not parts:
        _, size_stored = shard_info(shard_path)
        return np.zeros((0, 2, size_stored, size_stored), np.float32)
    return np.concatenate(parts)
