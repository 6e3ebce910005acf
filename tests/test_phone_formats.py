"""What phones and photo software really save: HEIC/HEIF (pillow-heif) and AVIF (Pillow) with
every EXIF orientation, and JPEGs tagged with a non-sRGB colour profile (Adobe RGB). Real
files, encoded by the tests, read through `colorize predict` and the real Snakemake data stage.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image, ImageCms

from colorize.colorspace import rgb_to_lab
from colorize.imageio import HEIF_READER, IMAGE_EXTENSIONS, load_image, read_header
from colorize.preprocess import PreprocessConfig, prepare_image
from colorize.tsv import read_tsv
from helpers import ADOBE_RGB, colour_photo, make_good_images, matrix_profile
from workflow_utils import snakemake, tiny_config, write_config

# EXIF orientation -> the transpose that makes the stored pixels upright
UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def phone_photo(path: Path, orientation: int = 1, seed: int = 0) -> np.ndarray:
    """A photo saved as ``path`` (HEIC or AVIF by its extension) with an EXIF orientation;
    returns the upright pixels a viewer shows."""
    stored = colour_photo(48, 72, seed=seed)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    t = UPRIGHT[orientation]
    return stored if t is None else np.asarray(Image.fromarray(stored).transpose(t))


def adobe_jpeg(path: Path) -> np.ndarray:
    """Saturated red, green and blue bands tagged Adobe RGB; returns what a colour-managed
    viewer shows (sRGB)."""
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, :32] = (220, 30, 40)
    rgb[:, 32:64] = (30, 200, 60)
    rgb[:, 64:] = (40, 60, 210)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95, icc_profile=matrix_profile(**ADOBE_RGB))
    with Image.open(path) as im:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        srgb = ImageCms.createProfile("sRGB")
        return np.asarray(ImageCms.profileToProfile(im.convert("RGB"), profile, srgb))


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_heic_and_avif_are_read_upright_in_every_orientation(tmp_path):
    assert HEIF_READER and {".heic", ".heif", ".avif"} <= IMAGE_EXTENSIONS
    for ext, fmt in ((".HEIC", "HEIF"), (".avif", "AVIF")):
        for orientation in range(1, 9):
            path = tmp_path / f"IMG_{orientation}{ext}"
            upright = phone_photo(path, orientation, seed=orientation)
            assert read_header(path).format == fmt
            got = load_image(path)
            assert got.shape == upright.shape, (ext, orientation)
            assert mean_abs(got, upright) < 8, (ext, orientation)  # lossy, but these pixels
            wrong = np.asarray(Image.fromarray(upright).transpose(Image.Transpose.ROTATE_180))
            assert mean_abs(got, wrong) > 2 * mean_abs(got, upright)


def lightness(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab(rgb.astype(np.float32) / 255)[..., 0]


def test_colorize_predict_reads_phone_formats_and_colour_profiles(tmp_path):
    folder = tmp_path / "phone"
    heic = phone_photo(folder / "IMG_0001.HEIC", orientation=6, seed=1)
    avif = phone_photo(folder / "camera/IMG_0002.avif", orientation=8, seed=2)
    managed = adobe_jpeg(folder / "adobe.jpg")
    out = tmp_path / "out"
    env = dict(os.environ, COLORIZE_DEVICE="cpu", OMP_NUM_THREADS="1")
    colorize = str(Path(sys.executable).with_name("colorize"))
    r = subprocess.run(
        [colorize, "predict", "-r", "--quiet", "-o", str(out), str(folder)],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert {row["status"] for row in read_tsv(out / "status.tsv")} == {"ok"}
    # HEIC and AVIF come out as PNG (OpenCV writes neither), upright, at full resolution, with
    # the photo's own lightness
    for rel, upright in (("IMG_0001.png", heic), ("camera/IMG_0002.png", avif)):
        written = np.asarray(Image.open(out / rel).convert("RGB"))
        assert written.shape == upright.shape
        assert mean_abs(lightness(written), lightness(upright)) < 2.5
    # the Adobe RGB photo keeps the lightness a colour-managed viewer shows, not the raw numbers'
    written = np.asarray(Image.open(out / "adobe.jpg").convert("RGB"))
    with Image.open(folder / "adobe.jpg") as im:
        raw = np.asarray(im.convert("RGB"))  # the pixel values, profile ignored
    assert mean_abs(lightness(raw), lightness(managed)) > 2  # the profile matters here
    assert mean_abs(lightness(written), lightness(managed)) < 1


@pytest.fixture(scope="module")
def data_stage(tmp_path_factory):
    """The real data stage over a folder of photos with HEIC, AVIF and an Adobe RGB JPEG."""
    base = tmp_path_factory.mktemp("phone_data")
    photos = base / "photos"
    make_good_images(photos, n=8, size=(48, 64))
    expected = {
        "IMG_0001.HEIC": phone_photo(photos / "IMG_0001.HEIC", orientation=6, seed=11),
        "phone/IMG_0002.heif": phone_photo(photos / "phone/IMG_0002.heif", orientation=3, seed=12),
        "IMG_0003.avif": phone_photo(photos / "IMG_0003.avif", orientation=8, seed=13),
        "adobe.jpg": adobe_jpeg(photos / "adobe.jpg"),
    }
    work = base / "work"
    work.mkdir()
    write_config(work, tiny_config("../photos", run_models=[]))
    snakemake(work, "results/tiny/manifest.tsv")
    return base, work, expected


def test_the_data_stage_stores_phone_formats_upright_and_in_srgb(data_stage, tmp_path):
    base, work, expected = data_stage
    manifest = {r["relpath"]: r for r in read_tsv(work / "results/tiny/manifest.tsv")}
    stored = {}
    for h5 in (work / "results/tiny/shards").glob("*.h5"):
        with h5py.File(h5) as f:
            for i, rel in enumerate(s.decode() for s in f["relpath"][...]):
                stored[rel] = (f["L"][i].astype(np.float32), f["ab"][i].astype(np.float32))
    cfg = PreprocessConfig(image_size=32, min_side=16)
    for rel, upright in expected.items():
        assert manifest[rel]["status"] == "ok", manifest[rel]
        assert rel in stored, rel
        reference = tmp_path / (rel.replace("/", "_") + ".png")  # the viewer's pixels, lossless
        Image.fromarray(upright).save(reference)
        lab = prepare_image(reference, cfg)
        L, ab = stored[rel]
        assert np.abs(L - lab[..., 0]).mean() < 2.5, rel
        assert np.abs(ab - lab[..., 1:].transpose(2, 0, 1)).mean() < 3, rel
    # the Adobe photo's shard is the colour-managed one, not its raw numbers'
    raw = tmp_path / "raw.png"
    with Image.open(base / "photos/adobe.jpg") as im:
        Image.fromarray(np.asarray(im.convert("RGB"))).save(raw)  # no profile: taken as sRGB
    raw_L = prepare_image(raw, cfg)[..., 0]
    assert np.abs(stored["adobe.jpg"][0] - raw_L).mean() > 2


def test_a_10_bit_heic_is_read_as_8_bit(tmp_path):
    """Phones save HDR photos as 10-bit HEIC: read as 8-bit RGB, the same picture."""
    import pillow_heif

    rgb8 = colour_photo(32, 48, seed=5)
    ten = rgb8.astype(np.uint16) * 257  # 16-bit values, saved as 10-bit HEVC
    path = tmp_path / "hdr.heic"
    pillow_heif.from_bytes(mode="RGB;16", size=(48, 32), data=ten.tobytes()).save(path, quality=-1)
    with Image.open(path) as im:
        assert im.info.get("bit_depth") == 10
    got = load_image(path)
    assert got.dtype == np.uint8 and got.shape == rgb8.shape
    assert mean_abs(got, rgb8) < 8  # HEVC with 4:2:0 chroma: lossy, but this picture
