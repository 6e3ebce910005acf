"""The full-resolution per-pixel loops, compiled with numba: one pass over a photo each, no
full-size temporaries, and the GIL released (``colorize_files``' threads run them side by side).

- ``lightness_from_table``: Lab L of each uint8 pixel, read from a table of all 2^24 colours'
  L (``fill_lightness_table``: OpenCV's own interpolation, so the result is OpenCV's L bit for
  bit, as uint16 ``colorspace.pack_lightness``) at one table read per pixel.
- ``lab_to_rgb8``: L (full size) and ab (resized bilinearly on the fly, row by row, as
  ``colorspace._UpsampledRows``) -> 8-bit sRGB, with the gamut fit of
  ``colorspace.fit_gamut`` for pixels outside the sRGB gamut (the same chroma table, read
  bilinearly) and the sRGB curve rounded exactly (a table gives the level, one comparison
  with the level's exact threshold corrects it), in float64 throughout.

The module imports numba (~0.3 s; ~118 MB with its JIT engine); ``colorspace`` imports it on the
first conversion that keeps lightness (predictions) or reads the L table, never for training
or evaluation. Compiled code is cached beside this file (or in numba's user cache), so only
the first run on a machine pays the compilation (~7 s).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# CIE Lab -> XYZ (D65, OpenCV's white point) -> linear sRGB, as colorspace._linear_rgb.
_XN, _ZN = 0.950456, 1.088754
_M = (
    (3.240479, -1.53715, -0.498535),
    (-0.969256, 1.875991, 0.041556),
    (0.055648, -0.204043, 1.057311),
)
_DELTA = 6.0 / 29.0
_KAPPA = 3.0 * _DELTA * _DELTA
_TWO_PI = 2.0 * math.pi


# Fast-math without "no NaNs"/"no infinities": a NaN prediction must not become a wild index.
_FAST = {"contract", "afn", "reassoc", "nsz", "arcp"}
_F32 = np.float32


@numba.njit(cache=True, nogil=True, inline="always")
def _g(t):
    return t * t * t if t > _DELTA else _KAPPA * (t - 4.0 / 29.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _linear(L, a, b):
    fy = (L + 16.0) / 116.0
    x = _XN * _g(fy + a / 500.0)
    y = _g(fy)
    z = _ZN * _g(fy - b / 200.0)
    return (
        _M[0][0] * x + _M[0][1] * y + _M[0][2] * z,
        _M[1][0] * x + _M[1][1] * y + _M[1][2] * z,
        _M[2][0] * x + _M[2][1] * y + _M[2][2] * z,
    )


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _row_linear(L, l_scale, a0, a1, b0, b1, f, lr, lg, lb):
    """One row: linear sRGB (unclipped) of L and ab = (a0 + f * a1, b0 + f * b1), in float32,
    branch-free on planar rows so that LLVM vectorises it (AVX2: 1.2 ns a pixel, 4x the
    same loop on interleaved ab)."""
    d, k, c4 = _F32(_DELTA), _F32(_KAPPA), _F32(4.0 / 29.0)
    for x in range(L.shape[0]):
        fy = (_F32(L[x]) * l_scale + _F32(16.0)) * _F32(1.0 / 116.0)
        fx = fy + (a0[x] + f * a1[x]) * _F32(1.0 / 500.0)
        fz = fy - (b0[x] + f * b1[x]) * _F32(1.0 / 200.0)
        gx = _F32(_XN) * (fx * fx * fx if fx > d else k * (fx - c4))
        gy = fy * fy * fy if fy > d else k * (fy - c4)
        gz = _F32(_ZN) * (fz * fz * fz if fz > d else k * (fz - c4))
        lr[x] = _F32(_M[0][0]) * gx + _F32(_M[0][1]) * gy + _F32(_M[0][2]) * gz
        lg[x] = _F32(_M[1][0]) * gx + _F32(_M[1][1]) * gy + _F32(_M[1][2]) * gz
        lb[x] = _F32(_M[2][0]) * gx + _F32(_M[2][1]) * gy + _F32(_M[2][2]) * gz


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _outside_mask(lr, lg, lb, lo, hi, mask):
    n = 0
    for x in range(lr.shape[0]):  # vectorised: ~0.5 ns a pixel
        out = ~(
            (lr[x] >= lo)
            & (lr[x] <= hi)
            & (lg[x] >= lo)
            & (lg[x] <= hi)
            & (lb[x] >= lo)
            & (lb[x] <= hi)
        )
        mask[x] = out  # (a NaN compares False: outside)
        n += out
    return n


@numba.njit(cache=True, nogil=True)
def _outside(lr, lg, lb, tol, mask, idx):
    """The columns whose linear RGB lies beyond ``tol`` of [0, 1], or is NaN (into ``idx``;
    how many): a vectorised mask, then its nonzero 8-byte words scanned."""
    w = lr.shape[0]
    if not _outside_mask(lr, lg, lb, _F32(-tol), _F32(1.0 + tol), mask):
        return 0
    words = mask[: w // 8 * 8].view(np.uint64)
    n = 0
    for k in range(words.shape[0]):
        if words[k]:
            for x in range(8 * k, 8 * k + 8):
                if mask[x]:
                    idx[n] = x
                    n += 1
    for x in range(w // 8 * 8, w):
        if mask[x]:
            idx[n] = x
            n += 1
    return n


@numba.njit(cache=True, nogil=True, inline="always")
def _hue(b, a):
    """atan2(b, a) in [0, 2 pi), to ~1e-5 rad (a table cell is 6e-3 rad): a minimax
    polynomial for atan on [0, 1] and the octant's symmetry, ~4x cheaper than libm's."""
    ax, ay = abs(a), abs(b)
    mx, mn = max(ax, ay), min(ax, ay)
    t = mn / mx if mx > 0.0 else 0.0
    s = t * t
    r = ((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s * t + t
    if ay > ax:
        r = 0.5 * math.pi - r
    if a < 0.0:
        r = math.pi - r
    if b < 0.0:
        r = _TWO_PI - r
    return r


@numba.njit(cache=True, nogil=True)
def _row_fit(L, l_scale, a0, a1, b0, b1, f, lr, lg, lb, gamut, idx, n):
    """The row's ``n`` columns ``idx`` lie outside the gamut: each gets its chroma scaled to
    the gamut's at its lightness and hue (``gamut``, read bilinearly) and its linear RGB
    recomputed (float64); a NaN or infinite colour becomes gray."""
    n_l, n_hue = gamut.shape[0], gamut.shape[1] - 1
    for m in range(n):
        x = idx[m]
        lum = np.float64(L[x]) * l_scale
        lum = lum if lum > 0.0 else 0.0  # (NaN -> 0)
        lum = lum if lum < 100.0 else 100.0
        a = np.float64(a0[x]) + np.float64(f) * np.float64(a1[x])
        b = np.float64(b0[x]) + np.float64(f) * np.float64(b1[x])
        chroma = math.sqrt(a * a + b * b)
        if not chroma < 1e6:  # NaN or infinite
            a = b = 0.0
        elif chroma > 0.0:
            hx = _hue(b, a) * (n_hue / _TWO_PI)
            ly = lum * ((n_l - 1) / 100.0)
            i = min(int(hx), n_hue - 1)
            j = min(int(ly), n_l - 2)
            fx, fy = hx - i, ly - j
            limit = (1.0 - fy) * ((1.0 - fx) * gamut[j, i] + fx * gamut[j, i + 1]) + fy * (
                (1.0 - fx) * gamut[j + 1, i] + fx * gamut[j + 1, i + 1]
            )
            limit = max(limit, 0.0)
            if chroma > limit:
                a, b = a * (limit / chroma), b * (limit / chroma)
        lr[x], lg[x], lb[x] = _linear(lum, a, b)


# 255 * sRGB(t) for t in [0.0031308, 1] as a polynomial in u = t^(1/4) (two square roots):
# degree 7 in x = u * _U_SCALE + _U_OFFSET (u's interval mapped to [-1, 1]), Chebyshev-fitted
# (numpy.polynomial.chebyshev.chebfit on 400,001 points, converted to powers of x). Largest
# error 0.0003 of a level in float32 (tests/test_kernels.py), so a value rounds to the exact
# curve's level unless it lies within 0.0003 of a half level.
_U_SCALE, _U_OFFSET = 2.619669900441418, -1.619669900441418
_SRGB_POLY = (
    1.06689387e02,
    1.24217228e02,
    2.55660045e01,
    -1.75530944e00,
    3.51926611e-01,
    -9.82003194e-02,
    4.98409153e-02,
    -2.10294373e-02,
)
_SRGB_KNEE = 0.0031308  # below: the straight segment 12.92 t


@numba.njit(cache=True, nogil=True, fastmath=_FAST, inline="always")
def _level(t):
    """Linear value -> 8-bit sRGB level, round(255 * srgb(t)), clipped (NaN -> 0); no table."""
    t = t if t > _F32(0.0) else _F32(0.0)  # (NaN -> 0)
    t = t if t < _F32(1.0) else _F32(1.0)
    x = np.sqrt(np.sqrt(t)) * _F32(_U_SCALE) + _F32(_U_OFFSET)
    c = _SRGB_POLY
    v = _F32(c[7])
    v = v * x + _F32(c[6])
    v = v * x + _F32(c[5])
    v = v * x + _F32(c[4])
    v = v * x + _F32(c[3])
    v = v * x + _F32(c[2])
    v = v * x + _F32(c[1])
    v = v * x + _F32(c[0])
    v = v if t > _F32(_SRGB_KNEE) else t * _F32(255.0 * 12.92)
    v = v + _F32(0.5)
    v = v if v < _F32(255.0) else _F32(255.0)
    return np.uint8(np.int32(v))


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _row_levels(t, out):
    for x in range(t.shape[0]):  # planar: vectorised (1.1 ns a value; 4 ns written interleaved)
        out[x] = _level(t[x])


@numba.njit(cache=True, nogil=True)
def _interleave(c0, c1, c2, out):
    for x in range(c0.shape[0]):
        out[x, 0], out[x, 1], out[x, 2] = c0[x], c1[x], c2[x]


@numba.njit(cache=True, nogil=True)
def lab_to_rgb8(L, l_scale, a_cols, a_step, b_cols, b_step, src, frac, keep, gamut, tol, bgr, out):
    """Fill ``out`` (HxWx3 uint8, BGR when ``bgr``) from L (HxW, times ``l_scale`` in Lab units)
    and the ab rows ``a_cols[src[y]] + frac[y] * a_step[src[y]]`` (and b alike; each h x W
    float32), with the gamut fit when ``keep`` (``_row_fit``); a row at a time, through planar
    row buffers (what LLVM vectorises), interleaved last."""
    h, w = L.shape
    lr, lg, lb = np.empty(w, np.float32), np.empty(w, np.float32), np.empty(w, np.float32)
    qr, qg, qb = np.empty(w, np.uint8), np.empty(w, np.uint8), np.empty(w, np.uint8)
    mask, idx = np.empty(w, np.bool_), np.empty(w, np.int64)
    first, last = (qb, qr) if bgr else (qr, qb)
    scale32 = np.float32(l_scale)
    for y in range(h):
        s, f = src[y], frac[y]
        _row_linear(L[y], scale32, a_cols[s], a_step[s], b_cols[s], b_step[s], f, lr, lg, lb)
        if keep:
            n = _outside(lr, lg, lb, tol, mask, idx)
            if n:
                _row_fit(
                    L[y],
                    l_scale,
                    a_cols[s],
                    a_step[s],
                    b_cols[s],
                    b_step[s],
                    f,
                    lr,
                    lg,
                    lb,
                    gamut,
                    idx,
                    n,
                )
        _row_levels(lr, qr)
        _row_levels(lg, qg)
        _row_levels(lb, qb)
        _interleave(first, qg, last, out[y])


@numba.njit(cache=True, nogil=True)
def lightness_from_table(img, table, bgr, out):
    """HxWx3 uint8 (BGR when ``bgr``, else RGB) -> ``out`` (HxW) = table[b | g << 8 | r << 16]."""
    h, w = out.shape
    ib, ir = (0, 2) if bgr else (2, 0)
    for y in range(h):
        for x in range(w):
            out[y, x] = table[
                np.int64(img[y, x, ib])
                | (np.int64(img[y, x, 1]) << 8)
                | (np.int64(img[y, x, ir]) << 16)
            ]


@numba.njit(cache=True, nogil=True)
def fill_lightness_table(grid, fixed, packed, table):
    """``table[b | g << 8 | r << 16]`` = packed L of every 8-bit colour, by OpenCV's trilinear
    interpolation (``colorspace._lightness_table``): ``fixed`` is a channel's 0..2^14 value,
    its top 5 bits the grid cell, the next 4 the weight in 16ths; ``grid`` (33^3, indexed
    r, g, b) the L of the grid colours in 2^14ths of 100; ``packed`` their uint16."""
    last = grid.shape[0] - 1
    for r in range(256):
        cx = fixed[r]
        tx, p = cx >> 9, (cx >> 5) & 15
        tx1 = min(tx + 1, last)
        for g in range(256):
            cy = fixed[g]
            ty, q = cy >> 9, (cy >> 5) & 15
            ty1 = min(ty + 1, last)
            for b in range(256):
                cz = fixed[b]
                tz, s = cz >> 9, (cz >> 5) & 15
                tz1 = min(tz + 1, last)
                v = (16 - p) * (
                    (16 - q) * ((16 - s) * grid[tx, ty, tz] + s * grid[tx, ty, tz1])
                    + q * ((16 - s) * grid[tx, ty1, tz] + s * grid[tx, ty1, tz1])
                ) + p * (
                    (16 - q) * ((16 - s) * grid[tx1, ty, tz] + s * grid[tx1, ty, tz1])
                    + q * ((16 - s) * grid[tx1, ty1, tz] + s * grid[tx1, ty1, tz1])
                )
                table[b | (g << 8) | (r << 16)] = packed[(v + 2048) >> 12]
