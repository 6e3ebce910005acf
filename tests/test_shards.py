"""colorize.shards: the HDF5 shard format, its float16 precision bound, the batched writer and fp16 converters."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from colorize.colorspace import lab_to_rgb, rgb_to_lab
from colorize.shards import ShardWriter, read_shard, to_float16, to_float32
from helpers import colour_photo


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


@pytest.mark.fast_path
@pytest.mark.parametrize("compression", ["none", "lzf", "gzip"])
def test_batched_shard_writer_stores_what_append_was_given(tmp_path, compression):
    rng = np.random.default_rng(0)
    labs = [
        np.stack([rng.uniform(0, 100, (16, 16)), *rng.uniform(-110, 110, (2, 16, 16))], -1).astype(
            np.float32
        )
        for _ in range(70)
    ]  # more than one write batch
    with ShardWriter(tmp_path / "s.h5", 16, "train", compression) as w:
        w_batch = len(w._L_buf)
        for i, lab in enumerate(labs):
            w.append(lab, f"{i}.png", f"{i:064d}")
    s = read_shard(tmp_path / "s.h5")
    assert len(s) == s.attrs["count"] == 70 and s.relpath == [f"{i}.png" for i in range(70)]
    assert np.array_equal(s.L, np.stack([lab[..., 0] for lab in labs]).astype(np.float16))
    assert np.array_equal(
        s.ab, np.stack([np.moveaxis(lab[..., 1:], -1, 0) for lab in labs]).astype(np.float16)
    )
    assert w_batch >= 1


@pytest.mark.fast_path
def test_float16_conversions_are_bit_exact():
    bits = np.arange(
        0x30000000, 0x47800000, 4099, dtype=np.uint32
    )  # 1e-9 .. 65536, every rounding case kind
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
