"""Full-resolution inference: sizes, lightness, batching, files in and out, decoding odd inputs."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from colorize.colorspace import normalize_ab, rgb_to_lab
from colorize.imageio import ImageDecodeError, as_rgb_uint8, read_rgb
from colorize.checkpoint import load_model
from colorize.infer import collect_inputs, colorize_files
from colorize.predict import colorize_arrays, predict_l_batch, predict_shard
from colorize.tsv import read_tsv
from colorize.models import ModelConfig, build_model
from colorize.shards import ShardWriter

SIZE = 64  # working size: small, so the tests stay fast on two cores


def tinted_model() -> nn.Module:
    """A tiny random U-Net whose output bias gives a moderate colour (chroma ~20), as a trained model would."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="unet", base_channels=4, depth=2))
    with torch.no_grad():
        model.out.weight.mul_(2.0)
        model.out.bias.copy_(torch.tensor([0.12, 0.10]))
    return model.eval()


class RampModel(nn.Module):
    """Predicts a = ramp along the width, b = ramp along the height (checks orientation and resizing)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        b, _, h, w = x.shape
        a = torch.linspace(-20, 20, w).view(1, 1, 1, w).expand(b, 1, h, w)
        bb = torch.linspace(-20, 20, h).view(1, 1, h, 1).expand(b, 1, h, w)
        return normalize_ab(torch.cat([a, bb], dim=1)) + 0 * self.dummy

    def ab_from_output(self, out):
        return out


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth mid-tone colour image (no pure black or white, where any colour leaves the gamut)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 215, (6, 6, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def lightness(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab(as_rgb_uint8(rgb))[..., 0]


def assert_same_lightness(inp: np.ndarray, out: np.ndarray) -> None:
    dl = np.abs(lightness(inp) - lightness(out))
    assert (dl <= 1.0).mean() >= 0.99, f"|dL| <= 1 for only {(dl <= 1).mean():.3%} of pixels (max {dl.max():.2f})"


def save_checkpoint(model: nn.Module, cfg: ModelConfig, path: Path) -> Path:
    torch.save({"format_version": 1, "model_config": cfg.to_dict(), "model": model.state_dict(), "epoch": 0}, path)
    return path


# --- arrays ------------------------------------------------------------------------------------


def test_odd_sizes_gray_and_rgba_keep_size_and_lightness():
    rgba = np.dstack([smooth_image(41, 29, 3), np.full((41, 29), 200, np.uint8)])
    inputs = [
        smooth_image(211, 317, 1),
        smooth_image(317, 211, 2),
        lightness_gray := smooth_image(50, 61, 4)[..., 1],
        lightness_gray[..., None],
        rgba,
    ]
    outputs = colorize_arrays(tinted_model(), inputs, size=SIZE, batch_size=2)
    assert len(outputs) == len(inputs)
    for inp, out in zip(inputs, outputs):
        assert out.shape == (*inp.shape[:2], 3) and out.dtype == np.uint8
        assert_same_lightness(inp, out)
        chroma = np.hypot(*np.moveaxis(rgb_to_lab(out)[..., 1:], -1, 0)).mean()
        assert chroma > 5, "the model's colour did not reach the output"


def test_colour_is_resized_back_the_right_way_round():
    """a grows left to right and b top to bottom at full size, for landscape and portrait inputs."""
    for h, w in [(211, 317), (317, 211)]:
        gray = np.full((h, w), 128, np.uint8)
        (out,) = colorize_arrays(RampModel(), [gray], size=SIZE)
        ab = rgb_to_lab(out)[..., 1:]
        a_by_col, b_by_row = ab[..., 0].mean(axis=0), ab[..., 1].mean(axis=1)
        assert np.corrcoef(a_by_col, np.arange(w))[0, 1] > 0.99
        assert np.corrcoef(b_by_row, np.arange(h))[0, 1] > 0.99
        assert abs(a_by_col[0] + 20) < 2 and abs(a_by_col[-1] - 20) < 2  # the ramp's ends survive the resize


def test_batched_equals_one_at_a_time():
    model = tinted_model()
    inputs = [smooth_image(70 + 9 * i, 90 - 7 * i, i) for i in range(5)]
    batched = colorize_arrays(model, inputs, size=SIZE, batch_size=4)
    single = [colorize_arrays(model, [x], size=SIZE, batch_size=1)[0] for x in inputs]
    for a, b in zip(batched, single):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# --- shards ------------------------------------------------------------------------------------


@pytest.fixture
def test_shard(tmp_path) -> Path:
    path = tmp_path / "test-000.h5"
    with ShardWriter(path, image_size=32, split="test", compression="none") as w:
        for i in range(5):
            w.append(rgb_to_lab(smooth_image(32, 32, 10 + i)), f"img{i}.jpg", f"{i:064d}")
    return path


def test_predict_shard_matches_direct_prediction(test_shard):
    model = tinted_model()
    ab = predict_shard(model, test_shard, batch_size=2)
    with h5py.File(test_shard) as f:
        L = f["L"][...].astype(np.float32)
    assert ab.shape == (5, 2, 32, 32) and ab.dtype == np.float32
    np.testing.assert_allclose(ab, predict_l_batch(model, L), atol=1e-4)
    resized = predict_shard(model, test_shard, size=16)  # through a working size: back at the shard's size
    assert resized.shape == (5, 2, 32, 32)


def test_load_model_roundtrip(tmp_path):
    cfg = ModelConfig(arch="unet", base_channels=4, depth=2)
    model = tinted_model()
    model2, ckpt = load_model(save_checkpoint(model, cfg, tmp_path / "m.pt"), "cpu")
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model2(x), model(x))
    assert not model2.training


# --- files -------------------------------------------------------------------------------------


def write_image(path: Path, rgb: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


def test_colorize_files_keeps_relative_names_and_records_failures(tmp_path):
    src = tmp_path / "in"
    write_image(src / "a.jpg", smooth_image(45, 67, 1), quality=95)
    write_image(src / "sub" / "b.png", smooth_image(67, 45, 2))
    write_image(src / "sub" / "deeper" / "c.gif", smooth_image(30, 40, 3))
    write_image(src / "d.tif", smooth_image(33, 21, 4))
    write_image(src / "e.png", smooth_image(40, 40, 5)[..., 0])  # 1-channel PNG
    (src / "sub" / "bad.png").write_bytes(b"")
    (src / "notes.txt").write_text("not an image, and not picked up by a folder scan")
    (src / ".hidden.jpg").write_text("skipped")
    inputs = collect_inputs([src], recursive=True)
    names = sorted(str(rel) for _, rel in inputs)
    assert names == ["a.jpg", "d.tif", "e.png", "sub/b.png", "sub/bad.png", "sub/deeper/c.gif"]

    out = tmp_path / "out"
    results = colorize_files(tinted_model(), inputs, out, size=SIZE, batch_size=2, workers=2, progress=False)
    ok = {Path(r.output).relative_to(out).as_posix(): r for r in results if r.ok}
    assert sorted(ok) == ["a.jpg", "d.tif", "e.png", "sub/b.png", "sub/deeper/c.png"]  # gif -> png
    for rel, r in ok.items():
        written = read_rgb(out / rel)
        original = read_rgb(r.input)
        assert written.shape == original.shape == (r.height, r.width, 3)
        if not rel.endswith(".jpg"):  # lossless outputs: the lightness is the input's
            assert_same_lightness(original, written)
    (bad,) = [r for r in results if not r.ok]
    assert bad.input.endswith("bad.png") and "empty" in bad.reason and bad.output is None

    status = read_tsv(out / "status.tsv")
    assert len(status) == 6
    assert {row["status"] for row in status} == {"ok", "failed"}
    assert [row["reason"] for row in status if row["status"] == "failed"] == [bad.reason]


def test_plain_paths_with_root_and_name_clashes(tmp_path):
    src = tmp_path / "in"
    a = write_image(src / "x" / "p.png", smooth_image(20, 30, 1))
    b = write_image(src / "x" / "p.gif", smooth_image(20, 30, 2))  # -> p.png too: must not overwrite
    c = write_image(tmp_path / "elsewhere.png", smooth_image(20, 30, 3))
    results = colorize_files(
        tinted_model(),
        [a, b, c],
        tmp_path / "out",
        root=src,
        size=SIZE,
        workers=1,
        progress=False,
        status_path=tmp_path / "status.tsv",
    )
    assert results[0].ok and Path(results[0].output) == tmp_path / "out" / "x" / "p.png"
    assert not results[1].ok and "overwrite" in results[1].reason
    assert not results[2].ok and "not under" in results[2].reason
    assert (tmp_path / "status.tsv").exists() and not (tmp_path / "out" / "status.tsv").exists()
    before = a.read_bytes()
    (same,) = colorize_files(tinted_model(), [a], a.parent, size=SIZE, progress=False, status_path=tmp_path / "s2.tsv")
    assert not same.ok and "overwrite the input" in same.reason and a.read_bytes() == before


# --- decoding ------------------------------------------------------------------------------------


def test_read_rgb_odd_formats(tmp_path):
    rgb = smooth_image(24, 36, 7)
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the result is upright, 36 x 24.
    exif = Image.Exif()
    exif[0x0112] = 6
    p = write_image(tmp_path / "rot.jpg", rgb, exif=exif, quality=95)
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
        write_image(tmp_path / f"x.{ext}", rgb)
        assert read_rgb(tmp_path / f"x.{ext}").shape == rgb.shape


def test_read_rgb_refuses_bad_files_with_reasons(tmp_path, monkeypatch):
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), np.uint8)).save(jpeg, format="JPEG")
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
    big = write_image(tmp_path / "big.png", smooth_image(100, 120))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded a refused image"))
    with pytest.raises(ImageDecodeError, match=r"too many pixels \(120x100"):
        read_rgb(big, max_pixels=10_000)
    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > 0  # Pillow's guard is restored
