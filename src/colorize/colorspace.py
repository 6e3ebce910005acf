"""Every colour conversion and normalisation of the project: RGB <-> CIE Lab, the model's scaling.

Lab comes from OpenCV on float32 RGB in [0, 1] (D65): L in 0..100, a and b in about -128..127.
The model sees ``L_norm = (L - L_CENTER) / L_SCALE`` (about -1..1) and predicts
``ab_norm = ab / AB_SCALE`` (about -1..1, matching a tanh output), exactly as the seed's
"target: ab / 128".
"""

from __future__ import annotations

import functools
import threading

import cv2
import numpy as np

L_CENTER = 50.0  # L is 0..100; centre it on 0
L_SCALE = 50.0  # ... and scale it to about -1..1
AB_SCALE = 128.0  # a and b are about -128..127; the seed's target is ab / 128
DEFAULT_SIZE = (
    256  # the seed's working size (the model's square input); a checkpoint's own size wins
)

COLOR_CONVERSION = "OpenCV cvtColor COLOR_RGB2Lab on float32 RGB in [0,1] (D65)"


def _lab_uint8(img: np.ndarray, order: str) -> np.ndarray:
    """HxWx3 uint8 (RGB or BGR) -> HxWx3 float32 Lab, without a channel swap and with a
    one-pass scaling to [0, 1] (``astype`` then ``*=`` is two passes)."""
    code = {"RGB": cv2.COLOR_RGB2Lab, "BGR": cv2.COLOR_BGR2Lab}[order]
    f32 = np.multiply(img, np.float32(1.0 / 255.0), dtype=np.float32)
    return cv2.cvtColor(f32, code, dst=f32)


def _once(build):
    """``build()``'s result, computed once per process even when several threads ask at once
    (the decode and encode threads of ``infer`` all want the same tables first)."""
    cached, lock = functools.lru_cache(maxsize=1)(build), threading.Lock()

    @functools.wraps(build)
    def get():
        if cached.cache_info().currsize:
            return cached()
        with lock:
            return cached()

    get.cache_info, get.cache_clear = cached.cache_info, cached.cache_clear
    return get


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


def lightness(img: np.ndarray, order: str = "RGB", dtype=np.float32) -> np.ndarray:
    """HxWx3 uint8 image -> HxW float32 Lab L (0..100), contiguous: ``rgb_to_lab(img)[..., 0]``
    without laying out a and b (inference needs only L at full resolution). ``dtype`` np.uint16:
    ``pack_lightness`` of it, half the memory, for holding many full-size photos; for a photo
    of a few megapixels (or once the table exists) read from a table of every colour's packed L
    (``_lightness_table``: OpenCV's own values, so the same bits, at one read per pixel)."""
    if img.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {img.dtype}")
    h, w = img.shape[:2]
    packed = np.dtype(dtype) == np.uint16
    if (
        packed
        and img.ndim == 3
        and img.shape[2] == 3
        and (h * w >= TABLE_LIGHTNESS_PIXELS or _lightness_table.cache_info().currsize)
    ):
        kernels = _kernels()
        if kernels is not None:
            out = np.empty((h, w), np.uint16)
            kernels.lightness_from_table(img, _lightness_table(), order == "BGR", out)
            return out
    rows = max(1, BAND_PIXELS // max(w, 1))
    pack = pack_lightness if packed else (lambda x: x)
    if rows >= h:
        return pack(cv2.extractChannel(_lab_uint8(img, order), 0))
    L = np.empty(
        (h, w), dtype
    )  # in bands: the float Lab temporary stays small (per pixel: same bits)
    for top in range(0, h, rows):
        L[top : top + rows] = pack(cv2.extractChannel(_lab_uint8(img[top : top + rows], order), 0))
    return L


TABLE_LIGHTNESS_PIXELS = (
    1 << 21
)  # from 2 MP the table (built once, ~0.1 s) is paid back in the first photo

# OpenCV converts float sRGB to Lab by trilinear interpolation in a table of its own (imgproc
# color_lab.cpp, RGB2Lab_f with "useInterpolation"): each channel scaled to 0..2^14 and rounded,
# a 33^3 grid of integer Lab values, 4-bit integer weights, rounded back (the reason its L
# differs from CIE's formula by up to 0.19).
_LAB_BASE, _LAB_GRID = 1 << 14, 33


@_once
def _lightness_table() -> np.ndarray:
    """2^24 uint16: ``lightness(px, "BGR", np.uint16)`` of the colour with bytes b | g << 8 | r << 16
    (32 MB). The grid's L values are read back from OpenCV (its conversion of the 33^3 grid
    colours, where the interpolation is the identity) and ``kernels.fill_lightness_table``
    interpolates them as OpenCV does; a sample is checked against OpenCV itself, and if that
    ever differs (another OpenCV) every colour is converted by OpenCV instead (~0.3 s)."""
    nodes = np.arange(_LAB_GRID, dtype=np.float32) / np.float32(_LAB_GRID - 1)
    rgb = np.stack(np.meshgrid(nodes, nodes, nodes, indexing="ij"), -1).reshape(1, -1, 3)
    grid_L = (
        cv2.extractChannel(cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab), 0).reshape(-1).astype(np.float64)
    )
    grid = np.rint(grid_L * (_LAB_BASE / 100)).astype(np.int32).reshape((_LAB_GRID,) * 3)
    # a channel's fixed-point value: _lab_uint8's float32 scaling, then OpenCV's cvRound(x * 2^14)
    fixed = np.rint(
        np.arange(256, dtype=np.float32) * np.float32(1 / 255) * np.float32(_LAB_BASE)
    ).astype(np.int32)
    packed = pack_lightness(
        np.arange(_LAB_BASE + 1, dtype=np.float32) * np.float32(100 / _LAB_BASE)
    )
    table = np.empty(1 << 24, np.uint16)
    _kernels().fill_lightness_table(grid, fixed, packed, table)
    sample = np.random.default_rng(0).integers(0, 1 << 24, 1 << 16).astype(np.uint32)
    px = sample.view(np.uint8).reshape(-1, 4)[None, :, :3]  # little-endian bytes: b, g, r
    if not np.array_equal(
        table[sample], _lightness_opencv(np.ascontiguousarray(px), "BGR").reshape(-1)
    ):
        px = np.empty((1, 1 << 16, 3), np.uint8)  # this OpenCV converts otherwise: every colour
        px[0, :, 0] = np.tile(np.arange(256, dtype=np.uint8), 256)  # through it, 64 K at a time
        px[0, :, 1] = np.repeat(np.arange(256, dtype=np.uint8), 256)
        for r in range(256):
            px[0, :, 2] = r
            table[r << 16 : (r + 1) << 16] = _lightness_opencv(px, "BGR").reshape(-1)
    return table


def _lightness_opencv(img: np.ndarray, order: str) -> np.ndarray:
    """Packed L of a small uint8 image by OpenCV's float conversion."""
    return pack_lightness(cv2.extractChannel(_lab_uint8(img, order), 0))


@_once
def _kernels():
    """The numba loops (``colorize.kernels``), or None where numba cannot be imported (then the
    OpenCV paths, slower, give the same L and the same colours within one level)."""
    try:
        from . import kernels
    except ImportError as e:  # numba is a dependency; a broken install still colorizes
        import logging

        logging.getLogger("colorize").warning(
            "numba unavailable (%s): full-size conversions take the slower OpenCV path", e
        )
        return None
    return kernels


L_UINT16_SCALE = 655.35  # L as uint16 (``pack_lightness``): 0..100 -> 0..65535, steps of 0.0015


def pack_lightness(L: np.ndarray) -> np.ndarray:
    """Float L (0..100) -> uint16 ``L * L_UINT16_SCALE``, rounded: half the memory of float32,
    for holding many full-size photos between decode and encode (``lab_to_rgb`` takes it back);
    the 0.0008 L it rounds off is far below an 8-bit level."""
    out = np.empty(L.shape, np.uint16)
    np.add(
        np.multiply(L, np.float32(L_UINT16_SCALE), dtype=np.float32),
        np.float32(0.5),
        out=out,
        casting="unsafe",
    )
    return out


def unpack_lightness(L: np.ndarray) -> np.ndarray:
    """``pack_lightness``'s uint16 -> float32 L (0..100); float L passes through."""
    if L.dtype != np.uint16:
        return L
    return np.multiply(L, np.float32(1.0 / L_UINT16_SCALE), dtype=np.float32)


# OpenCV's D65 white point and XYZ -> linear sRGB matrix (imgproc/src/color_lab.cpp).
_WHITE = np.array([0.950456, 1.0, 1.088754], np.float32)
_XYZ2RGB = np.array(
    [
        [3.240479, -1.53715, -0.498535],
        [-0.969256, 1.875991, 0.041556],
        [0.055648, -0.204043, 1.057311],
    ],
    np.float32,
)
# Lab -> (fx, fy, fz) of CIE's inverse: fy = (L + 16) / 116, fx = fy + a / 500, fz = fy - b / 200.
_LAB_TO_F = np.array(
    [[1 / 116, 1 / 500, 0, 16 / 116], [1 / 116, 0, 0, 16 / 116], [1 / 116, 0, -1 / 200, 16 / 116]],
    np.float32,
)
_F_TO_RGB = _XYZ2RGB * _WHITE  # XYZ = white * g(f), then the matrix: one 3x3 map of g(f)
_DELTA = 6.0 / 29.0


def _linear_rgb(lab: np.ndarray) -> np.ndarray:
    """N x 3 float32 Lab -> N x 3 linear sRGB, unclipped (OpenCV clips), to tell what lies
    outside the gamut; the two linear maps run as OpenCV transforms, the cube between in numpy."""
    if not len(lab):
        return np.zeros((0, 3), np.float32)
    f = cv2.transform(lab.reshape(1, -1, 3), _LAB_TO_F)
    g = np.where(f > _DELTA, f * f * f, np.float32(3 * _DELTA**2) * (f - np.float32(4.0 / 29.0)))
    return cv2.transform(g, _F_TO_RGB).reshape(-1, 3)


def _in_gamut(lab: np.ndarray, tol: float) -> np.ndarray:
    """N bools: the N x 3 Lab colours whose linear sRGB lies within ``tol`` of [0, 1]."""
    if not len(lab):
        return np.zeros(0, bool)
    inside = cv2.inRange(_linear_rgb(lab).reshape(1, -1, 3), (-tol,) * 3, (1 + tol,) * 3)
    return inside.reshape(-1) != 0


def _shrink_chroma(lab: np.ndarray, steps: int = 6, tol: float = 1e-3) -> np.ndarray:
    """N x 3 Lab -> N x 2 ab scaled toward gray just enough to lie in the sRGB gamut (linear
    RGB within ``tol`` of [0, 1]), found by ``steps`` halvings of the scale (to within
    2**-steps). Exact but slow per pixel: it builds the table ``fit_gamut`` looks up."""
    lo, hi = np.zeros(len(lab), np.float32), np.ones(len(lab), np.float32)
    trial = np.array(lab, np.float32)
    for _ in range(steps):
        mid = (lo + hi) / 2
        np.multiply(lab[:, 1:], mid[:, None], out=trial[:, 1:])
        ok = _in_gamut(trial, tol)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return lab[:, 1:] * lo[:, None]


# The sRGB gamut's boundary in Lab: the largest chroma in gamut at each lightness and hue, on a
# grid of L 0..100 in steps of 0.25 and hue in steps of 360/1024 degrees, interpolated
# bilinearly. Against a 20-step bisection per pixel it is within 1 level of 8-bit for 99.9 % of
# out-of-gamut pixels (tests/test_colorspace.py), where the 6-step bisection it replaced was off
# by up to 16 levels on real predictions, and it costs one lookup per pixel, not six conversions.
_GAMUT_L_STEPS, _GAMUT_HUES, _GAMUT_CHROMA = (
    401,
    1024,
    200.0,
)  # 200: beyond any sRGB colour's chroma


@_once
def _gamut_table() -> np.ndarray:
    """(L steps) x (hues + 1) float32 max chroma; the last column repeats the first (hue wraps).
    Built on first use (~0.1 s) by bisection along each grid point's hue ray (``_shrink_chroma``)."""
    hue = np.arange(_GAMUT_HUES, dtype=np.float32) * np.float32(2 * np.pi / _GAMUT_HUES)
    ray = np.empty((_GAMUT_L_STEPS, _GAMUT_HUES, 3), np.float32)
    ray[..., 0] = np.linspace(0, 100, _GAMUT_L_STEPS, dtype=np.float32)[:, None]
    ray[..., 1], ray[..., 2] = np.cos(hue) * _GAMUT_CHROMA, np.sin(hue) * _GAMUT_CHROMA
    limit = np.hypot(*_shrink_chroma(ray.reshape(-1, 3), steps=16, tol=0.0).T).astype(np.float32)
    limit = limit.reshape(_GAMUT_L_STEPS, _GAMUT_HUES)
    return np.ascontiguousarray(np.concatenate([limit, limit[:, :1]], axis=1))


def _gamut_chroma(L: np.ndarray, hue: np.ndarray) -> np.ndarray:
    """The largest chroma in the sRGB gamut at each lightness and hue (radians): N float32,
    from ``_gamut_table`` (cv2.remap interpolates it bilinearly)."""
    n = L.size
    cols = -(-n // 1024) * 1024  # cv2.remap wants maps under 32767 rows: lay them out 1024 wide
    x = np.zeros(cols, np.float32)
    y = np.zeros(cols, np.float32)
    np.multiply(hue.reshape(-1), np.float32(_GAMUT_HUES / (2 * np.pi)), out=x[:n])
    np.multiply(L.reshape(-1), np.float32((_GAMUT_L_STEPS - 1) / 100.0), out=y[:n])
    return cv2.remap(
        _gamut_table(),
        x.reshape(-1, 1024),
        y.reshape(-1, 1024),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    ).reshape(-1)[:n]


def fit_gamut(lab: np.ndarray, tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """For N x 3 float32 Lab colours: the indices of those outside the sRGB gamut (linear RGB
    beyond ``tol`` of [0, 1]) and those colours (M x 3) with ab scaled toward gray to the
    gamut's chroma at their lightness and hue. Colours on the boundary (a channel at 0 or 1,
    as every saturated photo has) are in."""
    out = np.flatnonzero(~_in_gamut(lab, tol))
    fit = np.take(lab, out, axis=0)
    if out.size:
        chroma, hue = cv2.cartToPolar(
            np.ascontiguousarray(fit[:, 1]), np.ascontiguousarray(fit[:, 2])
        )
        chroma = chroma.reshape(-1)
        fit[:, 1:] *= np.minimum(
            _gamut_chroma(fit[:, 0], hue) / np.maximum(chroma, np.float32(1e-6)), 1.0
        )[:, None]
    return out, fit


def lab_to_rgb(
    L: np.ndarray,
    ab: np.ndarray,
    keep_lightness: bool = False,
    order: str = "RGB",
    engine: str = "auto",
) -> np.ndarray:
    """L (HxW) and ab (hxwx2 or 2xhxw) in Lab units -> HxWx3 uint8 RGB (rounded, clipped), or
    BGR with ``order="BGR"`` (what OpenCV encodes, without a channel swap after). L may be
    uint16 from ``pack_lightness``. ab of another size than L is resized to it bilinearly
    (``_UpsampledRows``), as a model's prediction is.

    ``keep_lightness`` (for predicted colours): clipping an out-of-gamut colour to sRGB changes
    its lightness; instead its chroma is shrunk toward gray just enough to fit, so the result's
    L equals ``L`` within 8-bit rounding and a colorized photo keeps the original's tones.
    Pixels in gamut are untouched. Only a pixel OpenCV clipped (a channel at 0 or 1) can lie
    outside, so the exact gamut test, the gamut's chroma limit (a table lookup, ``fit_gamut``)
    and a second conversion run on those pixels alone. Every step is per pixel, so a large
    image is converted in bands of about ``BAND_PIXELS``: the float temporaries (and the
    full-size ab) stay a few megabytes, and in cache, whatever the photo's size.

    ``engine``: with ``keep_lightness``, "auto" runs the one-pass numba loop
    (``kernels.lab_to_rgb8``: the same fit, in float64, the sRGB curve rounded exactly; within
    one level of "opencv", the band-wise OpenCV conversion above, which is ~3x slower).
    """
    if engine not in ("auto", "opencv"):
        raise ValueError(f"engine must be 'auto' or 'opencv', not {engine!r}")
    L = np.asarray(L)
    if L.dtype != np.uint16:  # pack_lightness's: unpacked band by band
        L = L.astype(np.float32, copy=False)
    ab = np.asarray(ab, dtype=np.float32)
    if ab.ndim == 3 and ab.shape[0] == 2 and ab.shape[-1] != 2:
        ab = np.moveaxis(ab, 0, -1)
    code = {"RGB": cv2.COLOR_Lab2RGB, "BGR": cv2.COLOR_Lab2BGR}[order]
    h, w = L.shape
    kernels = _kernels() if keep_lightness and engine == "auto" else None
    if kernels is not None:
        return _lab_to_rgb_kernel(kernels, np.ascontiguousarray(L), ab, order)
    rows_of = (lambda band: ab[band]) if ab.shape[:2] == (h, w) else _UpsampledRows(ab, h, w)
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, BAND_PIXELS // max(w, 1))
    for top in range(0, h, rows):
        band = slice(top, min(h, top + rows))
        out[band] = _lab_band_to_rgb(L[band], rows_of(band), keep_lightness, code)
    return out


def _lab_to_rgb_kernel(kernels, L: np.ndarray, ab: np.ndarray, order: str) -> np.ndarray:
    """``lab_to_rgb(keep_lightness=True)`` by ``kernels.lab_to_rgb8``: ab's columns resized once
    per plane (h x W, as ``_UpsampledRows``), its rows interpolated inside the loop."""
    h, w = L.shape
    if ab.shape[:2] == (h, w):  # full size already: row y is ab[y] (+ 0 x itself)
        a_cols, b_cols = (np.ascontiguousarray(ab[..., c]) for c in (0, 1))
        a_step, b_step = a_cols, b_cols
        src, frac = np.arange(h), np.zeros(h, np.float32)
    else:
        (a_cols, a_step), (b_cols, b_step) = (_column_resized(ab[..., c], w) for c in (0, 1))
        src, frac = _source_rows(ab.shape[0], h)
    scale = 1.0 / L_UINT16_SCALE if L.dtype == np.uint16 else 1.0
    out = np.empty((h, w, 3), np.uint8)
    kernels.lab_to_rgb8(
        L,
        scale,
        a_cols,
        a_step,
        b_cols,
        b_step,
        src,
        frac,
        True,
        _gamut_table(),
        1e-3,
        order == "BGR",
        out,
    )
    return out


def _column_resized(plane: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray]:
    """An h x w (x channels) plane resized to h x W (bilinear, as cv2.resize), and each row's
    difference to the next (the last: 0): a row between rows s and s + 1 is ``cols[s] + frac * step[s]``."""
    cols = cv2.resize(
        np.ascontiguousarray(plane), (W, plane.shape[0]), interpolation=cv2.INTER_LINEAR
    )
    cols = cols.reshape((plane.shape[0], W) + plane.shape[2:])
    step = np.zeros_like(cols)
    step[:-1] = cols[1:] - cols[:-1]
    return cols, step


def _source_rows(h: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    """For resizing h rows to H bilinearly (half-pixel centres, as cv2.resize): each output row's
    upper source row and the fraction of the way to the next (0 at the edges: replicated)."""
    y = ((np.arange(H) + 0.5) * (h / H) - 0.5).astype(
        np.float32
    )  # OpenCV's source row, in float32 as it
    src = np.clip(np.floor(y).astype(np.int64), 0, h - 1)
    frac = np.where((y < 0) | (y >= h - 1), np.float32(0), y - np.floor(y)).astype(np.float32)
    return src, frac


class _UpsampledRows:
    """Rows of ab (h x w x 2) resized bilinearly to H x W, a band at a time: as ``cv2.resize``
    (INTER_LINEAR, half-pixel centres) to within float rounding, without the H x W x 2 array.
    The columns are resized once (h x W, small); each output row is then one ``cv2.scaleAdd``
    of its two source rows, ``top + f * (bottom - top)``."""

    def __init__(self, ab: np.ndarray, H: int, W: int):
        self.cols, self.step = _column_resized(ab, W)
        self.src, self.frac = _source_rows(ab.shape[0], H)

    def __call__(self, band: slice) -> np.ndarray:
        out = np.empty((band.stop - band.start,) + self.cols.shape[1:], np.float32)
        for i, y in enumerate(range(band.start, band.stop)):
            s = self.src[y]
            cv2.scaleAdd(self.step[s], float(self.frac[y]), self.cols[s], dst=out[i])
        return out


def _lab_band_to_rgb(L: np.ndarray, ab: np.ndarray, keep_lightness: bool, code: int) -> np.ndarray:
    lab = cv2.merge([np.ascontiguousarray(unpack_lightness(L)), np.ascontiguousarray(ab)])
    rgb = cv2.convertScaleAbs(cv2.cvtColor(lab, code), alpha=255.0)  # OpenCV clips to [0, 1]; round
    if keep_lightness:
        # A pixel OpenCV clipped has a channel at 0 or 255: only those can lie out of gamut.
        edge = np.flatnonzero(cv2.inRange(rgb, (1, 1, 1), (254, 254, 254)).reshape(-1) == 0)
        if edge.size:
            out, fit = fit_gamut(
                np.take(lab.reshape(-1).view(_LAB_PIXEL), edge).view(np.float32).reshape(-1, 3)
            )
            if out.size:
                fixed = cv2.convertScaleAbs(cv2.cvtColor(fit.reshape(1, -1, 3), code), alpha=255.0)
                np.put(
                    rgb.reshape(-1).view(_PIXEL), np.take(edge, out), fixed.reshape(-1).view(_PIXEL)
                )
    return rgb


_LAB_PIXEL = np.dtype((np.void, 12))  # one float32 Lab pixel: gather whole pixels at once
_PIXEL = np.dtype((np.void, 3))  # one RGB uint8 pixel: scatter whole pixels at once
BAND_PIXELS = (
    1 << 19
)  # pixels converted at a time (6 MB of float Lab: measured fastest of 2^17..2^20)


def normalize_l(L):
    """Lab L (0..100) -> model input (about -1..1). Works on numpy arrays and torch tensors."""
    return (L - L_CENTER) / L_SCALE


def normalize_l_(L):
    """``normalize_l`` in place (numpy array or torch tensor, float); returns ``L``."""
    L -= L_CENTER
    L /= L_SCALE
    return L


def denormalize_l(L_norm):
    """Model input (about -1..1) -> Lab L (0..100): the inverse of ``normalize_l``."""
    return L_norm * L_SCALE + L_CENTER


def normalize_ab(ab):
    """Lab ab (about +-128) -> model target (about -1..1)."""
    return ab / AB_SCALE


def normalize_ab_(ab):
    """``normalize_ab`` in place (numpy array or torch tensor, float); returns ``ab``."""
    ab /= AB_SCALE
    return ab


def denormalize_ab(ab_norm):
    """Model output (about -1..1) -> Lab ab (about +-128): the inverse of ``normalize_ab``."""
    return ab_norm * AB_SCALE


def mean_chroma(ab: np.ndarray) -> float:
    """Mean Lab chroma sqrt(a^2 + b^2); ab is HxWx2 or 2xHxW."""
    ab = np.asarray(ab, dtype=np.float32)
    axis = 0 if (ab.ndim == 3 and ab.shape[0] == 2 and ab.shape[-1] != 2) else -1
    return float(np.sqrt((ab**2).sum(axis=axis)).mean())
