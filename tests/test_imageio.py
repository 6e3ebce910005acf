"""colorize.imageio: decoding any image file (EXIF, odd encodings, reduced JPEG decode, headers, refusals)."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from colorize.colorspace import rgb_to_lab
from colorize.imageio import (
    ImageDecodeError,
    _jpeg_header,
    decode_rgb,
    jpeg_reduction,
    load_image,
    read_header,
    read_rgb,
)
from colorize.preprocess import PreprocessConfig, prepare_image, resize_square
from helpers import (
    ADOBE_RGB,
    colour_photo,
    gradient_photo,
    make_odd_but_good_images,
    matrix_profile,
    save,
    smooth_image,
)


def test_exif_orientation_applied(tmp_path):
    rgb = colour_photo(60, 100, seed=1)  # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = decode_rgb(tmp_path / "rot.jpg")
    assert out.shape == (100, 60, 3)  # displayed upright: portrait
    err = lambda a: np.abs(out.astype(float) - a.astype(float)).mean()  # noqa: E731
    assert err(np.rot90(rgb, -1)) < 8 < 20 < err(np.rot90(rgb, 1))  # right way round, not mirrored


def test_odd_encodings_decode_to_colour(tmp_path):
    names = make_odd_but_good_images(tmp_path)
    cfg = PreprocessConfig(image_size=32)
    for name in names:
        lab = prepare_image(tmp_path / name, cfg)
        assert lab.shape == (32, 32, 3), name
        assert np.sqrt(lab[..., 1] ** 2 + lab[..., 2] ** 2).mean() > 3, name
    # 16-bit keeps its tone (scaled by 257, not clipped)
    deep = decode_rgb(tmp_path / "deep16.png")
    np.testing.assert_allclose(
        deep.astype(int), colour_photo(96, 128, seed=203).astype(int), atol=1
    )
    # transparent pixels are composited on white, not black
    Image.fromarray(np.zeros((40, 40, 4), np.uint8), "RGBA").save(tmp_path / "clear.png")
    assert decode_rgb(tmp_path / "clear.png").min() == 255
    # header sees all frames, decode takes the first
    assert read_header(tmp_path / "anim.gif").frames == 3


def test_read_rgb_odd_formats(tmp_path):
    rgb = smooth_image(24, 36, 7)
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the result is upright, 36 x 24.
    exif = Image.Exif()
    exif[0x0112] = 6
    p = save(tmp_path / "rot.jpg", rgb, exif=exif, quality=95)
    up = read_rgb(p)
    assert up.shape == (36, 24, 3)
    with Image.open(p) as im:
        stored = np.asarray(im.convert("RGB"))  # as stored, orientation not applied
    np.testing.assert_array_equal(up, np.rot90(stored, -1))

    # 16-bit grayscale PNG: scaled to 8 bits, not clipped.
    g16 = np.array([[0, 257 * 128, 65535]], np.uint16).repeat(4, 0)
    p = tmp_path / "g16.png"
    Image.fromarray(g16).save(p)
    np.testing.assert_array_equal(read_rgb(p)[0, :, 0], [0, 128, 255])
    rgb16 = rgb.astype(np.uint16) * 257  # 16-bit colour PNG and TIFF (OpenCV writes BGR)
    for ext in ("png", "tif"):
        cv2.imwrite(str(tmp_path / f"c16.{ext}"), rgb16[..., ::-1])
        np.testing.assert_array_equal(read_rgb(tmp_path / f"c16.{ext}"), rgb)

    # Palette with a transparent index, and RGBA: transparent -> white.
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "pal.png", transparency=0)
    out = read_rgb(tmp_path / "pal.png")
    assert tuple(out[1, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 255)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = read_rgb(tmp_path / "rgba.png")
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[2, 2]) == (255, 255, 255)

    # CMYK JPEG, first frame of an animated GIF, BMP and WebP.
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert np.abs(read_rgb(tmp_path / "cmyk.jpg").astype(int) - rgb).mean() < 6
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 240)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert read_rgb(tmp_path / "anim.gif").max() < 50
    for ext in ("bmp", "webp"):
        save(tmp_path / f"x.{ext}", rgb)
        assert read_rgb(tmp_path / f"x.{ext}").shape == rgb.shape


def test_read_rgb_refuses_bad_files_with_reasons(tmp_path, monkeypatch):
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), np.uint8)).save(
        jpeg, format="JPEG"
    )
    Image.fromarray(smooth_image(200, 300)).save(png, format="PNG")
    cases = {
        "empty.png": (b"", "empty"),
        "text.jpg": (b"hello, I am not a picture\n" * 10, "not an image"),
        "cut.jpg": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated JPEG"),
        "cut_header.jpg": (jpeg.getvalue()[:300], "truncated"),
        "cut.png": (png.getvalue()[: len(png.getvalue()) // 2], "truncated PNG"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageDecodeError) as e:
            read_rgb(tmp_path / name)
        assert expected in e.value.reason, (name, e.value.reason)
    with pytest.raises(ImageDecodeError, match="not found"):
        read_rgb(tmp_path / "missing.png")

    # The pixel limit comes from the header: no pixel is decoded for a refused image.
    big = save(tmp_path / "big.png", smooth_image(100, 120))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded a refused image"))
    with pytest.raises(ImageDecodeError, match=r"too many pixels \(120x100"):
        read_rgb(big, max_pixels=10_000)
    assert (
        Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > 0
    )  # Pillow's guard is restored


# --- the fast paths: reduced-size JPEG decode, the JPEG header read from its markers ------------


def test_reduced_jpeg_decode_matches_full_decode_then_resize(tmp_path):
    big = np.kron(colour_photo(120, 160, seed=3), np.ones((8, 8, 1), np.uint8))  # 960 x 1280
    save(tmp_path / "big.jpg", big, quality=95)
    assert jpeg_reduction(1280, 960, 100) == 8 and jpeg_reduction(1280, 960, 256) == 2
    reduced = decode_rgb(tmp_path / "big.jpg", needed_side=100)
    assert reduced.shape == (120, 160, 3)
    cfg = PreprocessConfig(image_size=64)
    fast = prepare_image(tmp_path / "big.jpg", cfg)
    slow = rgb_to_lab(resize_square(decode_rgb(tmp_path / "big.jpg"), 64))
    assert np.abs(fast - slow).mean() < 1.0  # the cheap path gives (nearly) the same Lab


def _exif(orientation: int, order: str) -> bytes:
    e = "<" if order == "II" else ">"
    tiff = order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1)
    tiff += struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0)
    return b"Exif\0\0" + tiff


@pytest.mark.fast_path
@pytest.mark.parametrize(
    "case", ["plain", "gray", "progressive", "exif6_II", "exif8_MM", "cmyk", "cut"]
)
def test_jpeg_header_fast_path_agrees_with_pil(tmp_path, case):
    rgb = gradient_photo(40, 64)
    buf = io.BytesIO()
    im = Image.fromarray(rgb)
    if case == "gray":
        im.convert("L").save(buf, "JPEG")
    elif case == "progressive":
        im.save(buf, "JPEG", progressive=True)
    elif case.startswith("exif"):
        im.save(buf, "JPEG", exif=_exif(int(case[4]), case[-2:]))
    elif case == "cmyk":
        im.convert("CMYK").save(buf, "JPEG")
    else:
        im.save(buf, "JPEG")
    data = buf.getvalue()[:100] if case == "cut" else buf.getvalue()  # cut before the frame header
    (tmp_path / "x.jpg").write_bytes(data)
    fast = _jpeg_header(data)
    if case in ("cmyk", "cut"):
        assert fast is None  # left to PIL, which gives the reason
        return
    assert fast == read_header(tmp_path / "x.jpg")
    assert fast.orientation == (int(case[4]) if case.startswith("exif") else 1)


@pytest.mark.fast_path
def test_a_jpeg_cut_after_its_header_is_still_truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(gradient_photo(40, 64)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:300])
    from colorize.imageio import ImageDecodeError

    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


def saturated_photo():
    rng = np.random.default_rng(3)
    img = np.zeros((64, 96, 3), np.uint8)
    img[:, :32] = (220, 30, 40)
    img[:, 32:64] = (30, 200, 60)
    img[:, 64:] = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    return img


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif"])
def test_an_embedded_colour_profile_is_converted_to_srgb(tmp_path, ext):
    from PIL import ImageCms

    icc = matrix_profile(**ADOBE_RGB)
    rgb = saturated_photo()
    tagged, plain = tmp_path / f"adobe{ext}", tmp_path / f"plain{ext}"
    Image.fromarray(rgb).save(tagged, icc_profile=icc, **({"quality": 95} if ext == ".jpg" else {}))
    Image.fromarray(rgb).save(plain, **({"quality": 95} if ext == ".jpg" else {}))
    as_stored = np.asarray(Image.open(plain).convert("RGB"))  # the same pixels, no profile
    # what a colour-managed viewer shows: LittleCMS from the embedded profile to sRGB
    with Image.open(tagged) as im:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        expected = np.asarray(
            ImageCms.profileToProfile(im.convert("RGB"), profile, ImageCms.createProfile("sRGB"))
        )
    got = load_image(tagged)
    assert read_header(tagged).icc and not read_header(plain).icc
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert (
        np.abs(got.astype(int) - as_stored.astype(int)).mean() > 5
    )  # Adobe RGB's saturated red is not sRGB's
    assert np.array_equal(load_image(plain), as_stored if ext != ".jpg" else load_image(plain))


def test_photos_without_a_profile_or_with_srgb_keep_the_fast_decoder_and_their_bytes(tmp_path):
    from PIL import ImageCms

    rgb = saturated_photo()
    plain, srgb, broken = tmp_path / "plain.jpg", tmp_path / "srgb.jpg", tmp_path / "broken.jpg"
    Image.fromarray(rgb).save(plain, quality=95)
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(srgb, quality=95, icc_profile=srgb_icc)
    Image.fromarray(rgb).save(broken, quality=95, icc_profile=b"not a profile at all" * 10)
    reference = cv2.cvtColor(
        cv2.imread(str(plain), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION), cv2.COLOR_BGR2RGB
    )
    assert np.array_equal(load_image(plain), reference)  # bit-identical: OpenCV's decode, untouched
    assert np.array_equal(load_image(srgb), reference)  # an sRGB profile changes nothing
    assert np.array_equal(
        load_image(broken), reference
    )  # an unreadable profile is ignored, not fatal
    assert not read_header(srgb).icc and not read_header(broken).icc
