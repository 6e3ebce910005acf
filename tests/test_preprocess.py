"""colorize.preprocess: resize policies, one file to Lab at shard size (prepare_image), why a file is refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from colorize.colorspace import rgb_to_lab
from colorize.imageio import ImageDecodeError, decode_rgb, load_image, read_header
from colorize.preprocess import PreprocessConfig, prepare_image, resize_square
from helpers import colour_photo, gradient_photo, make_bad_images


@pytest.mark.parametrize("policy", ["crop", "pad", "stretch"])
@pytest.mark.parametrize("hw", [(96, 128), (128, 96), (300, 40)])
def test_resize_policies_give_square(policy, hw):
    out = resize_square(colour_photo(*hw), 64, policy)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_crop_is_centred_and_pad_is_neutral_gray():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # the centre square is white, the sides black
    assert resize_square(img, 50, "crop").min() == 255
    padded = resize_square(img, 50, "pad")
    assert (padded[0, 0] == 128).all() and (padded[25, 25] == 255).all()


def test_every_bad_kind_recorded_with_reason(tmp_path):
    expected = make_bad_images(tmp_path / "bad")
    cfg = PreprocessConfig(image_size=32, max_pixels=50_000_000)
    for name, category in expected.items():
        if name == "readme.txt":
            continue  # not an image name: handled by the scan, never decoded
        with pytest.raises(ImageDecodeError) as e:
            prepare_image(tmp_path / "bad" / name, cfg)
        assert e.value.reason.startswith(category), (name, e.value.reason)
        assert name in str(e.value)


@pytest.mark.fast_path
def test_prepare_image_equals_the_plain_pipeline(tmp_path):
    """prepare_image (one read, BGR, reduced decode, planes) == rgb_to_lab(resize_square(decode_rgb))."""
    files = {
        "small.jpg": gradient_photo(150, 150, 1),
        "big.jpg": np.kron(gradient_photo(200, 300, 2), np.ones((4, 4, 1), np.uint8)),
        "wide.png": gradient_photo(90, 300, 3),
    }
    for name, rgb in files.items():
        Image.fromarray(rgb).save(tmp_path / name, quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(gradient_photo(120, 200, 4)).save(tmp_path / "rot.jpg", exif=exif, quality=92)
    for policy in ("crop", "pad", "stretch"):
        cfg = PreprocessConfig(image_size=64, resize_policy=policy)
        for p in sorted(tmp_path.iterdir()):
            header = read_header(p)
            from colorize.preprocess import _needed_side

            needed = _needed_side(header.height, header.width, 64, policy)
            ref = rgb_to_lab(
                resize_square(decode_rgb(p, header=header, needed_side=needed), 64, policy)
            )
            assert np.array_equal(prepare_image(p, cfg), ref), (p.name, policy)
        assert np.array_equal(load_image(tmp_path / "rot.jpg"), decode_rgb(tmp_path / "rot.jpg"))
