"""Lab HDF5 shards: the hand-off between preprocessing and training/evaluation.

One file per (split, shard), e.g. ``results/<dataset>/shards/train-003.h5``:

=========  ==================  =========  ==============================================
dataset    shape               dtype      meaning
=========  ==================  =========  ==============================================
``L``      (N, H, W)           float16    Lab lightness, 0..100
``ab``     (N, 2, H, W)        float16    Lab a and b, about -128..127 (channel first)
``relpath`` (N,)               str        source path relative to the dataset root
``sha256`` (N,)                str        sha256 of the source file
=========  ==================  =========  ==============================================

Chunks hold one image each, so a reader can take any image, or a whole shard, cheaply.
float16 keeps 11 significant bits: Lab -> RGB from a shard reproduces the resized 8-bit
RGB to within 1/255 for >= 99 % of pixels (measured ~99.9 %, tests/test_shards.py).

File attributes: ``image_size``, ``split``, ``color_conversion``, ``library_version``,
``format_version``, ``compression``, ``count``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

from . import __version__
from .colorspace import COLOR_CONVERSION
from .files import temp_path

FORMAT_VERSION = 1
STORE_DTYPE = np.float16
COMPRESSIONS = ("none", "lzf", "gzip")
WRITE_BATCH_BYTES = 8 << 20  # ShardWriter buffers about this much float16 before each HDF5 write


def _compression_kwargs(compression: str) -> dict:
    if compression == "none":
        return {}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    raise ValueError(f"unknown shard compression {compression!r}; choose one of {COMPRESSIONS}")


_CONVERT_FP16 = getattr(cv2, "convertFp16", None)  # OpenCV types float16 as int16


def to_float16(src: np.ndarray, dst: np.ndarray) -> None:
    """float32 ``src`` -> float16 ``dst`` (same shape, C-contiguous), rounding to nearest even.

    OpenCV's conversion uses the CPU's F16C instructions: ~20x faster than numpy's
    ``astype(np.float16)`` here, with the same bits (``tests/test_shards.py`` checks).
    """
    if (
        _CONVERT_FP16 is not None
        and src.dtype == np.float32
        and src.size
        and src.flags.c_contiguous
    ):
        shape2d = (-1, src.shape[-1])
        out = _CONVERT_FP16(src.reshape(shape2d), dst.view(np.int16).reshape(shape2d))
        if out.ctypes.data == dst.ctypes.data:  # converted in place, as intended
            return
    dst[...] = src


def to_float32(src: np.ndarray, dst: np.ndarray) -> None:
    """float16 ``src`` (as stored) -> float32 ``dst`` (same number of elements, both C-contiguous),
    exactly; the reverse of ``to_float16``, by the same F16C instructions."""
    if _CONVERT_FP16 is not None and src.size and src.flags.c_contiguous and dst.flags.c_contiguous:
        c = src.shape[-1]
        out = _CONVERT_FP16(src.view(np.int16).reshape(-1, c), dst.reshape(-1, c))
        if out.ctypes.data == dst.ctypes.data:
            return
    dst[...] = src.reshape(dst.shape)


class ShardWriter:
    """Appends images one at a time, so memory stays flat however large the shard.

    Images are converted to float16 into a small buffer and written a few megabytes at a time
    (``WRITE_BATCH_BYTES``; still one image per chunk): one HDF5 resize per batch instead of
    four per image, and without compression each chunk's bytes go straight to the file
    (``write_direct_chunk``, no selection or cache machinery). Writes to a temporary name and
    renames on ``close()`` (``files.temp_path``): a killed job never leaves a half-written shard
    under the final name.
    """

    def __init__(self, path, image_size: int, split: str, compression: str = "none"):
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = int(image_size)
        self.n = 0  # images appended (written or buffered)
        self._written = 0  # images in the file
        kw = _compression_kwargs(compression)
        s = self.size
        # Whole chunks are written at once: HDF5's chunk cache would only add a copy.
        self.f = h5py.File(self.tmp, "w", rdcc_nbytes=0)
        self._raw_chunks = not kw  # no filters: a chunk's bytes are the image's bytes
        self.f.attrs.update(
            image_size=s,
            split=split,
            color_conversion=COLOR_CONVERSION,
            library_version=__version__,
            format_version=FORMAT_VERSION,
            compression=compression,
            store_dtype=np.dtype(STORE_DTYPE).name,
        )
        str_t = h5py.string_dtype("utf-8")
        self.L = self.f.create_dataset(
            "L", (0, s, s), STORE_DTYPE, maxshape=(None, s, s), chunks=(1, s, s), **kw
        )
        self.ab = self.f.create_dataset(
            "ab", (0, 2, s, s), STORE_DTYPE, maxshape=(None, 2, s, s), chunks=(1, 2, s, s), **kw
        )
        self.relpath = self.f.create_dataset(
            "relpath", (0,), str_t, maxshape=(None,), chunks=(256,)
        )
        self.sha256 = self.f.create_dataset("sha256", (0,), str_t, maxshape=(None,), chunks=(256,))
        batch = max(1, min(64, WRITE_BATCH_BYTES // (3 * s * s * np.dtype(STORE_DTYPE).itemsize)))
        self._L_buf = np.empty((batch, s, s), STORE_DTYPE)
        self._ab_buf = np.empty((batch, 2, s, s), STORE_DTYPE)
        self._names: list[str] = []
        self._shas: list[str] = []

    def append(self, lab: np.ndarray, relpath: str, sha256: str) -> None:
        """``lab`` is HxWx3 float32 Lab at the shard's image size (``preprocess.prepare_image``
        returns one whose channel-first planes are contiguous: stored without a copy)."""
        if lab.shape != (self.size, self.size, 3):
            raise ValueError(
                f"{relpath}: Lab image is {lab.shape}, shard expects {(self.size, self.size, 3)}"
            )
        planes = np.ascontiguousarray(np.moveaxis(lab, -1, 0), dtype=np.float32)
        k = len(self._names)
        to_float16(planes[0], self._L_buf[k])
        to_float16(planes[1:], self._ab_buf[k])
        self._names.append(relpath)
        self._shas.append(sha256)
        self.n += 1
        if len(self._names) == len(self._L_buf):
            self.flush()

    def flush(self) -> None:
        """Write the buffered images to the file."""
        k = len(self._names)
        if not k:
            return
        i = self._written
        for ds in (self.L, self.ab, self.relpath, self.sha256):
            ds.resize(i + k, axis=0)
        if self._raw_chunks:  # one image per chunk: write each chunk's bytes directly
            for j in range(k):
                self.L.id.write_direct_chunk((i + j, 0, 0), self._L_buf[j])
                self.ab.id.write_direct_chunk((i + j, 0, 0, 0), self._ab_buf[j])
        else:
            self.L[i : i + k] = self._L_buf[:k]
            self.ab[i : i + k] = self._ab_buf[:k]
        self.relpath[i : i + k] = self._names
        self.sha256[i : i + k] = self._shas
        self._written += k
        self._names, self._shas = [], []

    def close(self) -> None:
        self.flush()
        self.f.attrs["count"] = self.n
        self.f.close()
        self.tmp.replace(self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.f.close()
            self.tmp.unlink(missing_ok=True)


@dataclass
class Shard:
    """A whole shard in memory (float16 arrays, as stored)."""

    L: np.ndarray  # (N, H, W) float16, 0..100
    ab: np.ndarray  # (N, 2, H, W) float16
    relpath: list[str]
    sha256: list[str]
    attrs: dict

    def __len__(self) -> int:
        return len(self.relpath)


def strings(values) -> list[str]:
    """A string dataset's values as str (h5py gives bytes)."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in values]


def read_shard(path) -> Shard:
    """Read a whole shard with one read per dataset (the fast path for training)."""
    with h5py.File(path, "r") as f:
        return Shard(
            L=f["L"][...],
            ab=f["ab"][...],
            relpath=strings(f["relpath"][...]),
            sha256=strings(f["sha256"][...]),
            attrs=dict(f.attrs),
        )


class ShardError(ValueError):
    """A file that is not a readable shard of this project; the message names the file."""


def check_shard(path) -> None:
    """Raise ``ShardError`` naming ``path`` unless it is an HDF5 file with the shard datasets."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise ShardError(f"{path}: not an HDF5 file (a shard is the .h5 a shard job writes)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("L", "ab", "relpath") if k not in f]
            if missing:
                raise ShardError(
                    f"{path}: an HDF5 file but not a colorize shard (no {', '.join(missing)} dataset)"
                )
            if f["L"].ndim != 3 or f["ab"].ndim != 4:
                raise ShardError(
                    f"{path}: not a colorize shard (L is {f['L'].shape}, ab is {f['ab'].shape})"
                )
    except OSError as e:
        raise ShardError(f"{path}: unreadable HDF5 file ({e})") from None


def shard_info(path) -> tuple[int, int]:
    """(number of images, image size) of a shard, from its dataset shapes (cheap: no image read)."""
    with h5py.File(path, "r") as f:
        n, h, w = f["L"].shape
    if h != w:
        raise ValueError(f"{path}: images are {h}x{w}; shards hold square images")
    return int(n), int(h)


def iter_batches(path, batch_size: int = 32):
    """(L (B,H,W), ab (B,2,H,W), relpaths) float32 Lab batches, read a batch at a time (flat memory)."""
    with h5py.File(path, "r") as f:
        n = f["L"].shape[0]
        for start in range(0, n, max(1, batch_size)):
            sl = slice(start, min(n, start + batch_size))
            yield (
                f["L"][sl].astype(np.float32),
                f["ab"][sl].astype(np.float32),
                strings(f["relpath"][sl]),
            )


def iter_ab(path, batch_size: int = 256):
    """The shard's ab as float32 (B, 2, H, W) batches, reading nothing else."""
    with h5py.File(path, "r") as f:
        n = f["ab"].shape[0]
        for start in range(0, n, max(1, batch_size)):
            yield f["ab"][start : start + batch_size].astype(np.float32)


def read_images(
    paths: Sequence, indices: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images number ``indices`` of the shards taken in order: (L (n,H,W), ab (n,2,H,W)) float32, relpaths."""
    wanted = sorted(set(indices))
    L, ab, rel = [], [], []
    offset = 0
    for path in paths:
        with h5py.File(path, "r") as f:
            n = f["L"].shape[0]
            for i in wanted:
                if offset <= i < offset + n:
                    j = i - offset
                    L.append(f["L"][j].astype(np.float32))
                    ab.append(f["ab"][j].astype(np.float32))
                    rel.extend(strings([f["relpath"][j]]))
            offset += n
    if not L:
        return np.zeros((0, 0, 0), np.float32), np.zeros((0, 2, 0, 0), np.float32), []
    return np.stack(L), np.stack(ab), rel


def fingerprint(paths: Sequence[str | Path]) -> str:
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
