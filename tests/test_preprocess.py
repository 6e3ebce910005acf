"""Decoding, resizing, Lab precision, bad inputs and the shard builder (no Snakemake)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from colorize.colorspace import lab_to_rgb, rgb_to_lab
from colorize.imageio import ImageDecodeError, decode_rgb, jpeg_reduction, read_header
from colorize.manifest import merge, reason_category, scan, shard_rows, summarize
from colorize.tsv import read_tsv, write_tsv
from colorize.preprocess import PreprocessConfig, build_shard, prepare_image, resize_square
from colorize.shards import read_shard
from conftest import colour_photo, make_bad_images, make_odd_but_good_images, save


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


def test_exif_orientation_applied(tmp_path):
    rgb = colour_photo(60, 100, seed=1)  # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = decode_rgb(tmp_path / "rot.jpg")
    assert out.shape == (100, 60, 3)  # displayed upright: portrait
    err = lambda a: np.abs(out.astype(float) - a.astype(float)).mean()  # noqa: E731
    assert err(np.rot90(rgb, -1)) < 8 < 20 < err(np.rot90(rgb, 1))  # right way round, not mirrored


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


def test_lab_round_trip_through_shard_within_one_level(tmp_path):
    """Documented bound: Lab (float16 in the shard) -> RGB reproduces the resized 8-bit RGB
    to within 1/255 for >= 99 % of pixels."""
    rng = np.random.default_rng(0)
    rgbs = [colour_photo(64, 64, seed=s) for s in range(3)]
    rgbs.append(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))  # every colour, worst case
    from colorize.shards import ShardWriter

    with ShardWriter(tmp_path / "s.h5", 64, "train") as w:
        for i, rgb in enumerate(rgbs):
            w.append(rgb_to_lab(rgb), f"img{i}.png", "0" * 64)
    shard = read_shard(tmp_path / "s.h5")
    assert shard.L.dtype == np.float16 and shard.ab.shape == (4, 2, 64, 64)
    for i, rgb in enumerate(rgbs):
        back = lab_to_rgb(shard.L[i], shard.ab[i])
        err = np.abs(back.astype(int) - rgb.astype(int))
        assert (err <= 1).mean() >= 0.99, (i, (err <= 1).mean())
    assert shard.attrs["image_size"] == 64 and shard.attrs["split"] == "train"
    assert "OpenCV" in shard.attrs["color_conversion"] and shard.attrs["library_version"]


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


def test_odd_encodings_decode_to_colour(tmp_path):
    names = make_odd_but_good_images(tmp_path)
    cfg = PreprocessConfig(image_size=32)
    for name in names:
        lab = prepare_image(tmp_path / name, cfg)
        assert lab.shape == (32, 32, 3), name
        assert np.sqrt(lab[..., 1] ** 2 + lab[..., 2] ** 2).mean() > 3, name
    # 16-bit keeps its tone (scaled by 257, not clipped)
    deep = decode_rgb(tmp_path / "deep16.png")
    np.testing.assert_allclose(deep.astype(int), colour_photo(96, 128, seed=203).astype(int), atol=1)
    # transparent pixels are composited on white, not black
    Image.fromarray(np.zeros((40, 40, 4), np.uint8), "RGBA").save(tmp_path / "clear.png")
    assert decode_rgb(tmp_path / "clear.png").min() == 255
    # header sees all frames, decode takes the first
    assert read_header(tmp_path / "anim.gif").frames == 3


def test_scan_shard_merge_summary(photo_dir, tmp_path):
    shards = {"train": 2, "val": 1, "test": 1}
    rows = scan(photo_dir, val_fraction=0.2, test_fraction=0.2, shards=shards, max_pixels=50_000_000,
                min_side=16, progress=False)
    by = {r["relpath"]: r for r in rows}
    assert len(rows) == len({p for p in photo_dir.rglob("*") if p.is_file()})  # every file has a row
    assert by["zz_copy_of_good_01.jpg"]["status"] == "duplicate (same sha256 as good_01.jpg)"
    assert by["bad/bomb.png"]["status"].startswith("too many pixels")
    assert by["bad/readme.txt"]["status"].startswith("not an image file")
    assert by["good_01.jpg"]["sha256"] and int(by["good_01.jpg"]["width"]) == 128
    write_tsv(rows, tmp_path / "scan.tsv")
    rows = read_tsv(tmp_path / "scan.tsv")
    cfg = PreprocessConfig(image_size=32, max_pixels=50_000_000, min_side=16)
    status_files, total_ok = [], 0
    for split, n in shards.items():
        for i in range(n):
            part = shard_rows(rows, split, f"{i:03d}")
            h5, tsv = tmp_path / f"{split}-{i:03d}.h5", tmp_path / f"{split}-{i:03d}.tsv"
            counts = build_shard(part, [photo_dir / r["relpath"] for r in part], h5, tsv, split, cfg,
                                 progress=False)
            assert read_shard(h5).relpath == [r["relpath"] for r in read_tsv(tsv) if r["status"] == "ok"]
            total_ok += counts["ok"]
            status_files.append(tsv)
    final = merge(rows, status_files)
    good = [r["relpath"] for r in final if r["status"] == "ok"]
    # every good image (plain and odd encodings) reached a shard; every bad one has its reason
    assert sorted(good) == sorted(
        [f"{'sub/' if i % 3 == 0 else ''}good_{i:02d}{'.jpg' if i % 2 else '.png'}" for i in range(6)]
        + [f"odd/{n}" for n in ["rgba.png", "palette.png", "cmyk.jpg", "deep16.png", "anim.gif", "pages.tif"]]
    )
    assert total_ok == len(good)
    expected_bad = make_bad_images(tmp_path / "expected")  # the same generator: name -> category
    fin = {r["relpath"]: r for r in final}
    for name, category in expected_bad.items():
        assert reason_category(fin[f"bad/{name}"]["status"]).startswith(category), fin[f"bad/{name}"]
    summary = {(s["kind"], s["name"]): s["count"] for s in summarize(final)}
    assert summary[("total", "files")] == len(final)
    assert sum(summary[("split", s)] for s in ("train", "val", "test")) == len(good)
    assert summary[("excluded", "grayscale")] == 2 and summary[("excluded", "duplicate")] == 1


def test_include_patterns_select_subfolders(tmp_path):
    from colorize.manifest import list_files

    for rel in ["a/train/x.jpg", "a/test/y.jpg", "b/train/z.png", "top.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert list_files(tmp_path) == ["a/test/y.jpg", "a/train/x.jpg", "b/train/z.png", "top.png"]
    assert list_files(tmp_path, ["a/train/**", "b/train/**"]) == ["a/train/x.jpg", "b/train/z.png"]
    assert list_files(tmp_path, ["*/train/*.png"]) == ["b/train/z.png"]


def test_keep_lightness_shrinks_out_of_gamut_chroma_instead_of_clipping():
    rng = np.random.default_rng(0)
    L = rng.uniform(0, 100, (128, 128)).astype(np.float32)
    ab = rng.uniform(-110, 110, (128, 128, 2)).astype(np.float32)  # mostly out of gamut
    dL = lambda rgb: np.abs(rgb_to_lab(rgb)[..., 0] - L)  # noqa: E731
    assert (dL(lab_to_rgb(L, ab)) <= 1).mean() < 0.5  # plain clipping moves lightness
    kept = dL(lab_to_rgb(L, ab, keep_lightness=True))
    assert kept.max() <= 1.0  # shrinking chroma keeps it (8-bit rounding aside)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # in-gamut colours come back as they were
    lab = rgb_to_lab(rgb)
    assert np.abs(lab_to_rgb(lab[..., 0], lab[..., 1:], keep_lightness=True).astype(int) - rgb).max() <= 1
