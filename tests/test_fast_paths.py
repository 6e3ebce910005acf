"""The fast paths of issue 5 give the same bits as the straightforward code they replace.

Each test names the slow reference it is checked against.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from colorize.colorspace import rgb_to_lab
from colorize.colorspace import lab_planes, lightness
from colorize.data import InMemoryDataset, ShardDataset, _gather_crops, _slice_crops, draw_augmentation
from colorize.imageio import _jpeg_header, decode_rgb, load_image, read_header
from colorize.preprocess import PreprocessConfig, prepare_image, resize_square
from colorize.shards import ShardWriter, read_shard, to_float16, to_float32


def photo(h, w, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([60 + 150 * x / w, 40 + 120 * y / h, 200 - 100 * np.sin(x / 9)], -1)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def test_float16_conversions_are_bit_exact():
    bits = np.arange(0x30000000, 0x47800000, 4099, dtype=np.uint32)  # 1e-9 .. 65536, every rounding case kind
    x = bits[: bits.size // 8 * 8].view(np.float32).reshape(-1, 8)
    x = np.concatenate([x, -x])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow to inf, as numpy's
        ref = x.astype(np.float16)
    out = np.empty(x.shape, np.float16)
    to_float16(x, out)
    assert np.array_equal(out.view(np.uint16), ref.view(np.uint16))
    back = np.empty(x.shape, np.float32)
    to_float32(ref, back)
    assert np.array_equal(back, ref.astype(np.float32), equal_nan=True)


def _exif(orientation: int, order: str) -> bytes:
    e = "<" if order == "II" else ">"
    tiff = order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1)
    tiff += struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0)
    return b"Exif\0\0" + tiff


@pytest.mark.parametrize("case", ["plain", "gray", "progressive", "exif6_II", "exif8_MM", "cmyk", "cut"])
def test_jpeg_header_fast_path_agrees_with_pil(tmp_path, case):
    rgb = photo(40, 64)
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


def test_a_jpeg_cut_after_its_header_is_still_truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(photo(40, 64)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:300])
    from colorize.imageio import ImageDecodeError

    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


def test_prepare_image_equals_the_plain_pipeline(tmp_path):
    """prepare_image (one read, BGR, reduced decode, planes) == rgb_to_lab(resize_square(decode_rgb))."""
    files = {"small.jpg": photo(150, 150, 1), "big.jpg": np.kron(photo(200, 300, 2), np.ones((4, 4, 1), np.uint8)),
             "wide.png": photo(90, 300, 3)}
    for name, rgb in files.items():
        Image.fromarray(rgb).save(tmp_path / name, quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo(120, 200, 4)).save(tmp_path / "rot.jpg", exif=exif, quality=92)
    for policy in ("crop", "pad", "stretch"):
        cfg = PreprocessConfig(image_size=64, resize_policy=policy)
        for p in sorted(tmp_path.iterdir()):
            header = read_header(p)
            from colorize.preprocess import _needed_side

            needed = _needed_side(header.height, header.width, 64, policy)
            ref = rgb_to_lab(resize_square(decode_rgb(p, header=header, needed_side=needed), 64, policy))
            assert np.array_equal(prepare_image(p, cfg), ref), (p.name, policy)
        assert np.array_equal(load_image(tmp_path / "rot.jpg"), decode_rgb(tmp_path / "rot.jpg"))


def test_lab_planes_and_lightness_equal_rgb_to_lab():
    rgb = photo(33, 47, 5)
    ref = rgb_to_lab(rgb)
    assert np.array_equal(lab_planes(rgb), np.moveaxis(ref, -1, 0))
    assert np.array_equal(lab_planes(np.ascontiguousarray(rgb[..., ::-1]), "BGR"), np.moveaxis(ref, -1, 0))
    assert np.array_equal(lightness(rgb), ref[..., 0])


@pytest.mark.parametrize("compression", ["none", "lzf", "gzip"])
def test_batched_shard_writer_stores_what_append_was_given(tmp_path, compression):
    rng = np.random.default_rng(0)
    labs = [np.stack([rng.uniform(0, 100, (16, 16)), *rng.uniform(-110, 110, (2, 16, 16))], -1).astype(np.float32)
            for _ in range(70)]  # more than one write batch
    with ShardWriter(tmp_path / "s.h5", 16, "train", compression) as w:
        w_batch = len(w._L_buf)
        for i, lab in enumerate(labs):
            w.append(lab, f"{i}.png", f"{i:064d}")
    s = read_shard(tmp_path / "s.h5")
    assert len(s) == s.attrs["count"] == 70 and s.relpath == [f"{i}.png" for i in range(70)]
    assert np.array_equal(s.L, np.stack([lab[..., 0] for lab in labs]).astype(np.float16))
    assert np.array_equal(s.ab, np.stack([np.moveaxis(lab[..., 1:], -1, 0) for lab in labs]).astype(np.float16))
    assert w_batch >= 1


@pytest.mark.parametrize("crop", [None, 12, 31])
@pytest.mark.parametrize("train", [True, False])
def test_gpu_gather_equals_cpu_slices(crop, train):
    """The GPU path (one gather per tensor), run on CPU tensors, cuts exactly what the CPU path cuts."""
    L = torch.rand(9, 32, 32).half()
    ab = torch.rand(9, 2, 32, 32).half()
    rng = np.random.default_rng(3) if train else None
    order, tops, lefts, flips = draw_augmentation(9, 32, rng, crop, flip=True)
    c = crop if (crop and tops is not None) else 32
    a = _gather_crops(L, ab, order, tops, lefts, flips, c)
    b = _slice_crops(L.numpy(), ab.numpy(), order, tops, lefts, flips, c)
    assert torch.equal(a[0], torch.from_numpy(b[0])) and torch.equal(a[1], torch.from_numpy(b[1]))


def _coded_shards(tmp_path, sizes):
    paths, k = [], 0
    y, x = np.mgrid[0:24, 0:24].astype(np.float32)
    for j, n in enumerate(sizes):
        with ShardWriter(tmp_path / f"train-{j}.h5", 24, "train") as w:
            for _ in range(n):
                w.append(np.stack([x, y, np.full_like(x, k)], -1), f"{k}.png", str(k))
                k += 1
        paths.append(tmp_path / f"train-{j}.h5")
    return paths


def test_batches_are_the_samples_of_iter_in_order(tmp_path):
    paths = _coded_shards(tmp_path, [7, 0, 5, 9])
    for ds in (ShardDataset(paths, crop_size=10, seed=4), InMemoryDataset(paths, crop_size=10, seed=4)):
        ds.set_epoch(2)
        samples = list(ds)
        batches = list(ds.batches(4))
        assert [len(b[0]) for b in batches] == [4] * 5 + [1]
        flat = [(L, ab) for Lb, abb in batches for L, ab in zip(Lb, abb)]
        assert len(flat) == len(samples) == 21
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(samples, flat))
        assert [len(b[0]) for b in ds.batches(4, drop_last=True)] == [4] * 5
