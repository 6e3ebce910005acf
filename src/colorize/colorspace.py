"""Every colour conversion and normalisation of the project: RGB <-> CIE Lab, the model's scaling.

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


def _lab_uint8(img: np.ndarray, order: str) -> np.ndarray:
    """HxWx3 uint8 (RGB or BGR) -> HxWx3 float32 Lab, without a channel swap and with a
    one-pass scaling to [0, 1] (``astype`` then ``*=`` is two passes)."""
    code = {"RGB": cv2.COLOR_RGB2Lab, "BGR": cv2.COLOR_BGR2Lab}[order]
    f32 = np.multiply(img, np.float32(1.0 / 255.0), dtype=np.float32)
    return cv2.cvtColor(f32, code, dst=f32)


def rgb_to_lab(rgb: np.ndarray, order: str = "RGB") -> np.ndarray:
    """HxWx3 image (uint8, or float in [0, 1]; channels ``order`` RGB or BGR) -> HxWx3 float32
    Lab (L 0..100, ab about +-128)."""
    if rgb.dtype == np.uint8:
        return _lab_uint8(rgb, order)
    if rgb.dtype != np.float32:
        rgb = rgb.astype(np.float32)
    return cv2.cvtColor(rgb, {"RGB": cv2.COLOR_RGB2Lab, "BGR": cv2.COLOR_BGR2Lab}[order])


def lab_planes(img: np.ndarray, order: str = "RGB") -> np.ndarray:
    """HxWx3 uint8 image -> 3xHxW float32 Lab planes (L, a, b), laid out channel-first as the
    shards store L and ab: ``rgb_to_lab(img)`` transposed, contiguous."""
    if img.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {img.dtype}")
    return np.ascontiguousarray(_lab_uint8(img, order).transpose(2, 0, 1))


def lightness(img: np.ndarray, order: str = "RGB") -> np.ndarray:
    """HxWx3 uint8 image -> HxW float32 Lab L (0..100), contiguous: ``rgb_to_lab(img)[..., 0]``
    without laying out a and b (inference needs only L at full resolution)."""
    if img.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {img.dtype}")
    h, w = img.shape[:2]
    rows = max(1, BAND_PIXELS // max(w, 1))
    if rows >= h:
        return cv2.extractChannel(_lab_uint8(img, order), 0)
    L = np.empty((h, w), np.float32)  # in bands: the float Lab temporary stays small (per pixel: same bits)
    for top in range(0, h, rows):
        L[top : top + rows] = cv2.extractChannel(_lab_uint8(img[top : top + rows], order), 0)
    return L


# OpenCV's D65 white point and XYZ -> linear sRGB matrix (imgproc/src/color_lab.cpp).
_WHITE = np.array([0.950456, 1.0, 1.088754], np.float32)
_XYZ2RGB = np.array([[3.240479, -1.53715, -0.498535],
                     [-0.969256, 1.875991, 0.041556],
                     [0.055648, -0.204043, 1.057311]], np.float32)


def _linear_rgb(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Lab (L: N, ab: Nx2) -> linear sRGB (3xN), unclipped, to tell what lies outside the gamut."""
    fy = (L + 16.0) / 116.0
    xyz = []
    for f, white in ((fy + ab[:, 0] / 500.0, _WHITE[0]), (fy, _WHITE[1]), (fy - ab[:, 1] / 200.0, _WHITE[2])):
        cube = f * f * f
        xyz.append(np.where(f > 6.0 / 29.0, cube, (3.0 * (6.0 / 29.0) ** 2) * (f - 4.0 / 29.0)) * white)
    return _XYZ2RGB @ np.stack(xyz)


def _shrink_chroma(L: np.ndarray, ab: np.ndarray, steps: int = 6, tol: float = 1e-3) -> np.ndarray:
    """For N pixels (L: N, ab: Nx2): the ab scaled toward gray just enough to lie in the sRGB
    gamut, found by ``steps`` halvings of the scale (to within 2**-steps)."""
    lo, hi = np.zeros(len(L), np.float32), np.ones(len(L), np.float32)
    for _ in range(steps):
        mid = (lo + hi) / 2
        rgb = _linear_rgb(L, ab * mid[:, None])
        ok = ((rgb >= -tol) & (rgb <= 1 + tol)).all(axis=0)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return ab * lo[:, None]


def lab_to_rgb(L: np.ndarray, ab: np.ndarray, keep_lightness: bool = False) -> np.ndarray:
    """L (HxW) and ab (HxWx2 or 2xHxW) in Lab units -> HxWx3 uint8 RGB (rounded, clipped).

    ``keep_lightness`` (for predicted colours): clipping an out-of-gamut colour to sRGB changes
    its lightness; instead its chroma is shrunk toward gray just enough to fit, so the result's
    L equals ``L`` within 8-bit rounding and a colorized photo keeps the original's tones.
    Pixels in gamut are untouched. Only a pixel OpenCV clipped (a channel at 0 or 1) can have
    moved, so the lightness check (a second conversion) runs on those pixels alone. Every step
    is per pixel, so a large image is converted in bands of about ``BAND_PIXELS``: the float
    temporaries stay a few megabytes (and in cache) whatever the photo's size.
    """
    L = np.asarray(L, dtype=np.float32)
    ab = np.asarray(ab, dtype=np.float32)
    if ab.ndim == 3 and ab.shape[0] == 2 and ab.shape[-1] != 2:
        ab = np.moveaxis(ab, 0, -1)
    h, w = L.shape
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, BAND_PIXELS // max(w, 1))
    for top in range(0, h, rows):
        band = slice(top, min(h, top + rows))
        out[band] = _lab_band_to_rgb(L[band], ab[band], keep_lightness)
    return out


def _lab_band_to_rgb(L: np.ndarray, ab: np.ndarray, keep_lightness: bool) -> np.ndarray:
    lab = cv2.merge([np.ascontiguousarray(L), np.ascontiguousarray(ab[..., 0]), np.ascontiguousarray(ab[..., 1])])
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)  # float, clipped to [0, 1]
    if keep_lightness:
        inside = cv2.inRange(rgb, (_IN_LO,) * 3, (_IN_HI,) * 3)  # 255 where no channel was clipped
        idx = np.flatnonzero(inside.reshape(-1) == 0)
        if idx.size:
            flat_rgb, flat_lab = rgb.reshape(-1, 3), lab.reshape(-1, 3)
            moved = np.abs(cv2.cvtColor(flat_rgb[idx][:, None, :], cv2.COLOR_RGB2Lab)[:, 0, 0] - flat_lab[idx, 0]) > 0.2
            idx = idx[moved]
        if idx.size:
            flat = lab.reshape(-1, 3)[idx]
            flat[:, 1:] = _shrink_chroma(flat[:, 0], flat[:, 1:])
            rgb.reshape(-1, 3)[idx] = cv2.cvtColor(flat[:, None, :], cv2.COLOR_Lab2RGB)[:, 0]
    return cv2.convertScaleAbs(rgb, alpha=255.0)  # round, saturate to 0..255 (rgb is >= 0)


BAND_PIXELS = 1 << 19  # pixels converted at a time (6 MB of float Lab: measured fastest of 2^17..2^20)
_IN_LO, _IN_HI = 1e-7, 1.0 - 1e-7  # strictly inside [0, 1]: nothing was clipped


def normalize_l(L):
    """Lab L (0..100) -> model input (about -1..1). Works on numpy arrays and torch tensors."""
    return (L - L_CENTER) / L_SCALE


def normalize_l_(L):
    """``normalize_l`` in place (numpy array or torch tensor, float); returns ``L``."""
    L -= L_CENTER
    L /= L_SCALE
    return L


def denormalize_l(L_norm):
    return L_norm * L_SCALE + L_CENTER


def normalize_ab(ab):
    """Lab ab (about +-128) -> model target (about -1..1)."""
    return ab / AB_SCALE


def normalize_ab_(ab):
    """``normalize_ab`` in place (numpy array or torch tensor, float); returns ``ab``."""
    ab /= AB_SCALE
    return ab


def denormalize_ab(ab_norm):
    return ab_norm * AB_SCALE


def mean_chroma(ab: np.ndarray) -> float:
    """Mean Lab chroma sqrt(a^2 + b^2); ab is HxWx2 or 2xHxW."""
    ab = np.asarray(ab, dtype=np.float32)
    axis = 0 if (ab.ndim == 3 and ab.shape[0] == 2 and ab.shape[-1] != 2) else -1
    return float(np.sqrt((ab**2).sum(axis=axis)).mean())
