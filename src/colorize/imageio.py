"""Decoding photos robustly: any common format, EXIF orientation, and a clear reason on failure.

``read_header`` reads only the header (format, size, frames, EXIF orientation), so size limits
(decompression bombs, tiny images) are checked before a single pixel is decoded.
``decode_rgb`` returns HxWx3 uint8 RGB and raises ``ImageDecodeError`` naming the file and
the reason. JPEGs much larger than needed take OpenCV's reduced-size decode
(``IMREAD_REDUCED_COLOR_2/4/8``: the IDCT runs at 1/2, 1/4 or 1/8 scale), which is several
times cheaper than a full decode followed by a resize.

``load_image`` is the one-read path for bulk work (shards, inference): the file is read once,
its header parsed from those bytes and checked, and the same bytes decoded; it can return
OpenCV's BGR order so that callers converting with OpenCV skip a channel swap.
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF (what phones save by default) through Pillow; pinned in envs/
    import pillow_heif

    pillow_heif.register_heif_opener()  # rotates by the file's own transforms and EXIF, on open
    HEIF_READER = f"pillow-heif {pillow_heif.__version__}"
except ImportError:  # an environment without it: such photos get a row saying what to install
    HEIF_READER = None

# We check pixel counts ourselves (``max_pixels``) against the header, before decoding.
Image.MAX_IMAGE_PIXELS = None

HEIF_EXTENSIONS = frozenset(".heic .heif .hif".split())
# Extensions a folder scan treats as images (a file named explicitly is always tried). AVIF is
# read by Pillow itself (its wheels bundle libavif since 11.3).
IMAGE_EXTENSIONS = (
    frozenset(
        ".jpg .jpeg .jpe .jfif .png .tif .tiff .bmp .dib .webp .gif .ppm .pgm .pbm .pnm .tga .jp2 .j2k .ico "
        ".avif".split()
    )
    | HEIF_EXTENSIONS
)
DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: ~1.2 GB of float32 Lab at full resolution
DEFAULT_MIN_SIDE = (
    32  # for training and evaluation sets: a shorter side below this is too small to learn from
)
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class ImageDecodeError(ValueError):
    """A file that cannot be used as an image; ``reason`` is what goes into the manifest."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Header:
    """What an image file's header says, read before any pixel is decoded."""

    format: str  # PIL's format name: JPEG, PNG, TIFF, GIF, ...
    width: int  # as stored (before EXIF rotation)
    height: int
    mode: str  # PIL mode: RGB, L, RGBA, P, CMYK, I;16, ...
    frames: int  # > 1 for animated GIF / multi-page TIFF (we use the first)
    orientation: int  # EXIF orientation tag, 1 = upright
    icc: bool = False  # carries an embedded colour profile other than sRGB (converted on decode)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def is_image_name(path) -> bool:
    """Whether a folder scan takes ``path`` as an image, by its extension (``IMAGE_EXTENSIONS``)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _orientation(im: Image.Image) -> int:
    """EXIF orientation without decoding pixels (PNG's getexif() would load the whole image)."""
    try:
        if im.format in ("JPEG", "MPO", "TIFF", "WEBP"):
            return int(im.getexif().get(0x0112, 1) or 1)
        raw = im.info.get("exif")  # an eXIf chunk seen before the image data, if any
        if raw:
            exif = Image.Exif()
            exif.load(raw)
            return int(exif.get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block should not hide a usable image
        pass
    return 1


# Files up to this size are read whole once (header and pixels from the same bytes); a larger
# one has its header checked from the file first, so a refused giant is never read into memory.
READ_WHOLE_BYTES = 64 << 20


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "not an image (a folder)") from None
    if not data:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    return data


def _unsupported(path: Path) -> ImageDecodeError:
    """The error for a file no installed reader recognises (what to install, for a HEIC photo
    in an environment without pillow-heif)."""
    if HEIF_READER is None and path.suffix.lower() in HEIF_EXTENSIONS:
        return ImageDecodeError(path, "not readable here (HEIC/HEIF needs pillow-heif: see envs/)")
    return ImageDecodeError(path, "not an image (unrecognised or unsupported format)")


def read_header(path, data: bytes | None = None) -> Header:
    """Header only: no pixel data is decoded. Raises ImageDecodeError for non-images.

    ``data``: the file's bytes when the caller has already read them (parsed from memory).
    """
    path = Path(path)
    try:
        if data is None:
            if not path.exists():
                raise ImageDecodeError(path, "file not found")
            if path.stat().st_size == 0:
                raise ImageDecodeError(path, "empty file (0 bytes)")
        elif not data:
            raise ImageDecodeError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path if data is None else io.BytesIO(data)) as im:
                orientation = _orientation(im)
                return Header(
                    im.format or "?",
                    im.width,
                    im.height,
                    im.mode,
                    getattr(im, "n_frames", 1),
                    orientation,
                    _foreign_profile(im.info.get("icc_profile")) is not None,
                )
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise _unsupported(path) from None
    except (OSError, SyntaxError, ValueError) as e:
        kind = "truncated image" if "truncated" in str(e).lower() else "unreadable image header"
        raise ImageDecodeError(path, f"{kind} ({e})") from None


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic).
_SOF_MARKERS = frozenset(
    (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
)


def _exif_orientation(tiff: bytes) -> int | None:
    """Orientation tag of IFD0 in an EXIF (TIFF) block; 1 when absent; None when malformed."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8 or int.from_bytes(tiff[2:4], order) != 42:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    if ifd + 2 + 12 * count > len(tiff):
        return None
    for k in range(count):
        e = ifd + 2 + 12 * k
        if int.from_bytes(tiff[e : e + 2], order) == 0x0112:
            kind, n = (
                int.from_bytes(tiff[e + 2 : e + 4], order),
                int.from_bytes(tiff[e + 4 : e + 8], order),
            )
            if n != 1 or kind not in (3, 4):  # SHORT or LONG, one value, stored inline
                return None
            return int.from_bytes(tiff[e + 8 : e + (10 if kind == 3 else 12)], order) or 1
    return 1


def _jpeg_header(data: bytes) -> Header | None:
    """The header of a plain 8-bit grayscale or colour JPEG, read from its markers (~10x cheaper
    than PIL's parser); None for anything else (CMYK, multi-picture, malformed, truncated ...),
    which ``read_header`` then reads with PIL as before."""
    i, n, orientation = 2, len(data), 1
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        seg = data[i + 4 : i + 2 + length]
        if length < 2 or len(seg) != length - 2:
            return None
        if marker == 0xE1 and seg.startswith(b"Exif\0\0") and orientation == 1:
            found = _exif_orientation(seg[6:])
            if found is None:
                return None
            orientation = found
        elif marker == 0xE2 and seg.startswith((b"MPF\0", b"ICC_PROFILE\0")):
            return None  # multi-picture (PIL reports it as MPO) or a colour profile: PIL reads it
        elif marker in _SOF_MARKERS:
            if len(seg) < 6 or seg[0] != 8 or seg[5] not in (1, 3):
                return None
            height, width = int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big")
            if not height or not width:
                return None
            return Header("JPEG", width, height, "L" if seg[5] == 1 else "RGB", 1, orientation)
        elif marker in (0xDA, 0xD9):  # scan data or end of image before a frame header
            return None
        i += 2 + length
    return None


def check_size(path, header: Header, *, max_pixels: int, min_side: int = 1) -> None:
    """Refuse decompression bombs and images too small to learn from, from the header alone."""
    if header.pixels > max_pixels:
        raise ImageDecodeError(
            path,
            f"too many pixels ({header.width}x{header.height} > max_pixels {max_pixels}): decompression-bomb guard",
        )
    if min(header.width, header.height) < min_side:
        raise ImageDecodeError(
            path, f"too small ({header.width}x{header.height} < min_side {min_side})"
        )


# EXIF orientation (1..8) -> the OpenCV operation that makes the stored pixels upright, as
# PIL's ImageOps.exif_transpose does. cv2.flip/rotate/transpose return new C-contiguous
# arrays: numpy's rot90/::-1 views have negative or swapped strides, which OpenCV functions
# given a ``dst`` refuse ("Layout of the output array dst is incompatible").
_ORIENT_OPS = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation (1..8) applied to an HxWxC array; always a C-contiguous result."""
    op = _ORIENT_OPS.get(orientation)
    return np.ascontiguousarray(img) if op is None else op(np.ascontiguousarray(img))


def jpeg_reduction(width: int, height: int, needed_side: int) -> int:
    """Largest factor in 8, 4, 2 that keeps the shorter side at least ``needed_side``."""
    for r in (8, 4, 2):
        if min(width, height) // r >= needed_side:
            return r
    return 1


def _decode_jpeg_cv2(
    path: Path,
    header: Header,
    needed_side: int | None,
    data: bytes | None = None,
    bgr: bool = False,
) -> np.ndarray:
    buf = np.fromfile(path, dtype=np.uint8) if data is None else np.frombuffer(data, dtype=np.uint8)
    tail = buf[-4096:].tobytes().rstrip(b"\x00\r\n ")
    if not tail.endswith(b"\xff\xd9"):
        raise ImageDecodeError(path, "truncated JPEG (no end-of-image marker)")
    r = 1 if needed_side is None else jpeg_reduction(header.width, header.height, needed_side)
    img = cv2.imdecode(buf, _REDUCED_FLAGS[r] | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageDecodeError(path, "corrupt JPEG (decoder failed)")
    if not bgr:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return _apply_orientation(img, header.orientation)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # 16-bit (or wider integer) data: scale by the type's range, not the image's, to keep tone.
    maxval = 65535 if arr.max(initial=0) > 255 or arr.dtype == np.uint16 else 255
    return np.clip(arr.astype(np.float32) * (255.0 / maxval) + 0.5, 0, 255).astype(np.uint8)


_SRGB = ImageCms.createProfile("sRGB")
_CONVERTIBLE = {
    "RGB": "RGB",
    "L": "RGB",
    "CMYK": "RGB",
    "RGBA": "RGBA",
}  # mode -> mode after conversion


def _foreign_profile(icc: bytes | None) -> ImageCms.ImageCmsProfile | None:
    """The embedded ICC profile when it is not sRGB (an unreadable one is ignored: the pixels
    are taken as sRGB, as before)."""
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile)
    except (OSError, ImageCms.PyCMSError, TypeError, ValueError):
        return None
    return None if "srgb" in description.lower() else profile


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Pixels in their embedded non-sRGB profile ``icc`` (Adobe RGB, Display P3, a CMYK press
    profile, a gray gamma) converted to sRGB by LittleCMS (perceptual intent); else as they are."""
    profile = _foreign_profile(icc)
    if profile is None or im.mode not in _CONVERTIBLE:
        return im
    try:
        return ImageCms.profileToProfile(im, profile, _SRGB, outputMode=_CONVERTIBLE[im.mode])
    except ImageCms.PyCMSError:  # a profile that does not fit the pixels (an RGB one on CMYK ...)
        return im


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        # Composite on white: transparent areas become white, not black.
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode.startswith("I") or mode == "F":
        gray = _to_uint8(np.asarray(im))
        return np.repeat(gray[..., None], 3, axis=-1) if gray.ndim == 2 else gray[..., :3]
    if mode == "RGB":
        return np.asarray(im)
    # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX ...: PIL knows how to make RGB of them.
    return np.asarray(im.convert("RGB"))


def _decode_pil(
    path: Path, header: Header, needed_side: int | None, data: bytes | None = None
) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path if data is None else io.BytesIO(data)) as im:
                im.seek(0)  # first frame of an animated GIF / multi-page TIFF
                if needed_side and im.format == "JPEG":
                    im.draft("RGB", (needed_side, needed_side))  # reduced-size DCT for CMYK JPEGs
                im.load()
                icc = im.info.get("icc_profile")
                im = _to_srgb(ImageOps.exif_transpose(im), icc)
                rgb = _pil_to_rgb(im)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise _unsupported(path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        kind = "truncated" if "truncated" in msg else "corrupt"
        raise ImageDecodeError(path, f"{kind} {header.format} image ({msg})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ImageDecodeError(path, f"unexpected decoded shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def decode_rgb(
    path,
    *,
    header: Header | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    needed_side: int | None = None,
) -> np.ndarray:
    """Decode a file to HxWx3 uint8 RGB, upright (EXIF applied), first frame, alpha on white.

    ``needed_side``: the shorter output side the caller needs; a JPEG whose shorter side is at
    least 2x that is decoded at reduced size. None decodes at full resolution.
    """
    path = Path(path)
    if header is None:
        return load_image(path, max_pixels=max_pixels, needed_side=needed_side)
    check_size(path, header, max_pixels=max_pixels)
    return _decode(path, header, needed_side, None, bgr=False)


def _decode(
    path: Path, header: Header, needed_side: int | None, data: bytes | None, bgr: bool
) -> np.ndarray:
    if header.format == "JPEG" and header.mode in ("RGB", "L") and not header.icc:
        return _decode_jpeg_cv2(path, header, needed_side, data, bgr=bgr)
    rgb = _decode_pil(path, header, needed_side, data)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if bgr else rgb


def load_image(
    path,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    needed_side: int | Callable[[int, int], int] | None = None,
    bgr: bool = False,
) -> np.ndarray:
    """``decode_rgb`` with a single read of the file: header parsed from the bytes, size checked
    (``max_pixels``, ``min_side``), then the same bytes decoded. ``needed_side`` may be a
    function of the stored (height, width). ``bgr=True`` returns OpenCV's channel order.

    This is the one decoder of the project: shards, evaluation folders and full-resolution
    inference all call it. The result is always upright (EXIF applied), HxWx3 uint8 and
    C-contiguous, whatever the format, mode or orientation, so any OpenCV call can take it.
    """
    path = Path(path)
    max_pixels = sys.maxsize if max_pixels is None else max_pixels
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except OSError:
        size = 0
    if size > READ_WHOLE_BYTES:  # a giant file: check its header before reading it all
        check_size(path, read_header(path), max_pixels=max_pixels, min_side=min_side)
    data = _read_bytes(path)
    header = (_jpeg_header(data) if data[:2] == b"\xff\xd8" else None) or read_header(path, data)
    check_size(path, header, max_pixels=max_pixels, min_side=min_side)
    if callable(needed_side):
        needed_side = needed_side(header.height, header.width)
    return _decode(path, header, needed_side, data, bgr=bgr)


def read_rgb(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A user's photo at full resolution (inference): HxWx3 uint8 RGB, upright."""
    return load_image(path, max_pixels=max_pixels)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An in-memory image (HxW, HxWx1, HxWx3 or HxWx4; uint8 or uint16) -> HxWx3 uint8 RGB."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise TypeError(f"expected a uint8 or uint16 image, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.shape[2] == 4:  # alpha on white, as for files
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        rgb = a[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)
