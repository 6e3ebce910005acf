"""RGB <-> CIE Lab conversion and the one normalisation the model uses.

Lab comes from OpenCV on float32 RGB in [0, 1] (D65): L in 0..100, a and b in about -128..127.
The model sees ``L_norm = (L - L_CENTER) / L_SCALE`` (about -1..1) and predicts
``ab_norm = ab / AB_SCALE`` (about -1..1, matching a tanh output), exactly as the seed's
"target: ab / 128".
"""

from __future__ import annotations

import cv2
import numpy as np

L_CENTER = 50.0  # L is 0..100; centre it on 0
L_SCALE = 50.0  # ... and scale it to about -1..1
AB_SCALE = 128.0  # a and b are about -128..127; the seed's target is ab / 128

COLOR_CONVERSION = "OpenCV cvtColor COLOR_RGB2Lab on float32 RGB in [0,1] (D65)"


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB (uint8, or float in [0, 1]) -> HxWx3 float32 Lab (L 0..100, ab about +-128)."""
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32) * (1.0 / 255.0)
    elif rgb.dtype != np.float32:
        rgb = rgb.astype(np.float32)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def lab_to_rgb(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """L (HxW) and ab (HxWx2 or 2xHxW) in Lab units -> HxWx3 uint8 RGB (rounded, clipped)."""
    L = np.asarray(L, dtype=np.float32)
    ab = np.asarray(ab, dtype=np.float32)
    if ab.ndim == 3 and ab.shape[0] == 2 and ab.shape[-1] != 2:
        ab = np.moveaxis(ab, 0, -1)
    lab = np.concatenate([L[..., None], ab], axis=-1)
    rgb = cv2.cvtColor(np.ascontiguousarray(lab), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def normalize_l(L):
    """Lab L (0..100) -> model input (about -1..1). Works on numpy arrays and torch tensors."""
    return (L - L_CENTER) / L_SCALE


def denormalize_l(L_norm):
    return L_norm * L_SCALE + L_CENTER


def normalize_ab(ab):
    """Lab ab (about +-128) -> model target (about -1..1)."""
    return ab / AB_SCALE


def denormalize_ab(ab_norm):
    return ab_norm * AB_SCALE


def mean_chroma(ab: np.ndarray) -> float:
    """Mean Lab chroma sqrt(a^2 + b^2); ab is HxWx2 or 2xHxW."""
    ab = np.asarray(ab, dtype=np.float32)
    axis = 0 if (ab.ndim == 3 and ab.shape[0] == 2 and ab.shape[-1] != 2) else -1
    return float(np.sqrt((ab.astype(np.float32) ** 2).sum(axis=axis)).mean())
