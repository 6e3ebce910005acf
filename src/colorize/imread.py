"""Decode one user image for inference: any common format in, HxWx3 uint8 RGB out.

``read_rgb(path)`` applies the EXIF orientation, takes the first frame of animations,
composites transparency (RGBA, LA, palette with a transparent index) on white, scales 16-bit
and float images to 8 bits and converts CMYK, palette and grayscale images to RGB. Anything it
cannot turn into pixels raises ``ImageDecodeError(path, reason)`` with a reason a user can act
on: empty file, not an image, corrupt or truncated data, too many pixels.

The pixel limit is checked from the header, before any pixel data is decoded. Pillow's own
decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, a process-wide setting) is switched off
only for the instant of reading the header, under a lock, and replaced by ``max_pixels``.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: ~1.2 GB of float32 Lab at full resolution

# Extensions a folder scan treats as images (files named explicitly are always tried).
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .tif .tiff .bmp .dib .webp .gif .ppm .pgm .pbm .pnm .tga .jp2 .j2k .ico".split()
)

_HEADER_LOCK = threading.Lock()


class ImageDecodeError(Exception):
    """One input could not be decoded; ``reason`` says why in words."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _open_header(path: Path) -> Image.Image:
    """``Image.open`` (reads the header only) with Pillow's global pixel guard off."""
    with _HEADER_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """A decoded Pillow image in any mode -> HxWx3 uint8 RGB (transparency on white)."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grayscale: Pillow's convert("L") would clip, not scale.
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        gray = np.clip(a * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0  # float images are 0..1 or 0..255
        gray = np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode == "1":
        im = im.convert("L")
    return np.asarray(im.convert("RGB"))


def _reason(fmt: str, part: str, e: Exception) -> str:
    msg = str(e) or type(e).__name__
    if "truncated" in msg.lower() or isinstance(e, EOFError):
        return f"truncated {fmt} file (ends inside the {part}: {msg})"
    return f"corrupt {fmt} {part} ({msg})"


def read_rgb(path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to an upright HxWx3 uint8 RGB array, or raise ``ImageDecodeError``."""
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except OSError as e:
        raise ImageDecodeError(path, f"cannot read file: {e.strerror or e}") from None
    if path.is_dir():
        raise ImageDecodeError(path, "is a directory, not an image file")
    if nbytes == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        im = _open_header(path)
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image (format not recognised)") from None
    except Exception as e:  # header parsers raise assorted errors on garbage (OSError, ValueError, struct.error, ...)
        raise ImageDecodeError(path, _reason("image", "header", e)) from None
    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageDecodeError(path, f"image has no pixels ({w}x{h})")
        if max_pixels is not None and w * h > max_pixels:
            raise ImageDecodeError(path, f"too many pixels: {w}x{h} = {w * h:,} > limit {max_pixels:,} (not decoded)")
        fmt = im.format or "image"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Palette images with transparency ..."
                im.seek(0)  # first frame of a GIF / multi-page TIFF
                im.load()
                try:
                    upright = ImageOps.exif_transpose(im)
                except Exception:  # a broken EXIF block should not cost the picture
                    upright = im
                rgb = _to_rgb_array(upright)
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageDecodeError(path, _reason(fmt, "data", e)) from None
        except MemoryError:
            raise ImageDecodeError(path, f"out of memory decoding a {w}x{h} {fmt}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageDecodeError(path, f"unsupported pixel layout {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An in-memory image (HxW, HxWx1, HxWx3 or HxWx4; uint8 or uint16) -> HxWx3 uint8 RGB."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = (a.astype(np.uint32) * 255 + 32767) // 65535
        a = a.astype(np.uint8)
    elif a.dtype != np.uint8:
        raise TypeError(f"expected a uint8 or uint16 image, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        rgb = a[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)
