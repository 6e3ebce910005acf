"""colorize.infer: the threaded file pipeline keeps relative names, records every failure, refuses name clashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from colorize.imageio import read_rgb
from colorize.infer import collect_inputs, colorize_files
from colorize.tsv import read_tsv
from helpers import assert_same_lightness, save, smooth_image, tinted_model

SIZE = 64  # working size: small, so the tests stay fast on two cores

torch.set_num_threads(1)


def test_colorize_files_keeps_relative_names_and_records_failures(tmp_path):
    src = tmp_path / "in"
    save(src / "a.jpg", smooth_image(45, 67, 1), quality=95)
    save(src / "sub" / "b.png", smooth_image(67, 45, 2))
    save(src / "sub" / "deeper" / "c.gif", smooth_image(30, 40, 3))
    save(src / "d.tif", smooth_image(33, 21, 4))
    save(src / "e.png", smooth_image(40, 40, 5)[..., 0])  # 1-channel PNG
    (src / "sub" / "bad.png").write_bytes(b"")
    (src / "notes.txt").write_text("not an image, and not picked up by a folder scan")
    (src / ".hidden.jpg").write_text("skipped, with a row saying so")
    inputs = collect_inputs([src], recursive=True)
    names = sorted(str(item.rel) for item in inputs if not item.refused)
    assert names == ["a.jpg", "d.tif", "e.png", "sub/b.png", "sub/bad.png", "sub/deeper/c.gif"]
    assert [(str(i.rel), i.refused.split(" (")[0]) for i in inputs if i.refused] == [
        (".hidden.jpg", "hidden file")
    ]

    out = tmp_path / "out"
    results = colorize_files(
        tinted_model(), inputs, out, size=SIZE, batch_size=2, workers=2, progress=False
    )
    ok = {Path(r.output).relative_to(out).as_posix(): r for r in results if r.ok}
    assert sorted(ok) == ["a.jpg", "d.tif", "e.png", "sub/b.png", "sub/deeper/c.png"]  # gif -> png
    for rel, r in ok.items():
        written = read_rgb(out / rel)
        original = read_rgb(r.input)
        assert written.shape == original.shape == (r.height, r.width, 3)
        if not rel.endswith(".jpg"):  # lossless outputs: the lightness is the input's
            assert_same_lightness(original, written)
    (bad,) = [r for r in results if r.status == "failed"]
    assert bad.input.endswith("bad.png") and "empty" in bad.reason and bad.output is None
    (hidden,) = [r for r in results if r.status == "skipped"]
    assert hidden.input.endswith(".hidden.jpg") and hidden.output is None

    status = read_tsv(out / "status.tsv")
    assert len(status) == 7
    assert {row["status"] for row in status} == {"ok", "failed", "skipped"}
    assert [row["reason"] for row in status if row["status"] == "failed"] == [bad.reason]


def test_collect_inputs_follows_links_but_not_into_the_output_or_round_in_circles(tmp_path):
    src, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    for rel in ("a-b.jpg", "a/b.jpg", "a/.hidden/c.jpg", ".d/e.jpg", "out/old.jpg", "z.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"")
    (elsewhere / "f.png").parent.mkdir(parents=True)
    (elsewhere / "f.png").write_bytes(b"")
    (src / "linked").symlink_to(elsewhere)  # a folder linked into the tree is walked
    (src / "a" / "up").symlink_to(src)  # a loop: walked once
    (src / "g.jpg").symlink_to(src / "out" / "old.jpg")  # an output, through a link: excluded
    inputs = collect_inputs([src], recursive=True, exclude=[src / "out"])
    assert [str(i.rel) for i in inputs if not i.refused] == ["a/b.jpg", "a-b.jpg"]  # as Paths sort
    refused = {str(i.rel): i.refused for i in inputs if i.refused}
    assert sorted(refused) == [".d", "a/.hidden", "a/up", "linked"]  # hidden, a loop, leaving
    assert refused["a/up"].startswith("symlink loop")
    assert "--follow-links" in refused["linked"]
    inputs = collect_inputs([src], recursive=True, exclude=[src / "out"], follow_links=True)
    assert [str(i.rel) for i in inputs if not i.refused] == ["a/b.jpg", "a-b.jpg", "linked/f.png"]
    assert [str(i.rel) for i in collect_inputs([src]) if not i.refused] == ["a-b.jpg", "g.jpg"]


def test_plain_paths_with_root_and_name_clashes(tmp_path):
    src = tmp_path / "in"
    a = save(src / "x" / "p.png", smooth_image(20, 30, 1))
    b = save(src / "x" / "p.gif", smooth_image(20, 30, 2))  # -> p.png too: must not overwrite
    c = save(tmp_path / "elsewhere.png", smooth_image(20, 30, 3))
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
    (same,) = colorize_files(
        tinted_model(), [a], a.parent, size=SIZE, progress=False, status_path=tmp_path / "s2.tsv"
    )
    assert not same.ok and "overwrite the input" in same.reason and a.read_bytes() == before


@pytest.mark.parametrize("engine", ["pytorch", "onnxruntime"])
def test_outputs_equal_the_straightforward_pipeline(tmp_path, engine):
    """The fast path (L from the table and held as uint16, ab upsampled row by row inside the
    numba loop with the gamut table, BGR encoded without a channel swap, and on a CPU the
    shipped model's ONNX twin: issue 13) against the plain way on real photos with the shipped
    checkpoint in PyTorch: float L of the whole image, ab resized whole, every out-of-gamut
    pixel bisected, OpenCV's conversion."""
    import cv2
    import numpy as np
    from skimage import data

    from colorize.checkpoint import load_model, working_size
    from colorize.colorspace import rgb_to_lab
    from colorize.predict import ab_to_size, predict_ab, working_l
    from colorize.shipped import SHIPPED
    from helpers import lab_to_rgb_exact

    model, ckpt = load_model(SHIPPED, "cpu")
    size = working_size(ckpt)
    if engine == "onnxruntime":
        from colorize.runtime import OnnxColorizer
        from colorize.shipped import SHIPPED_ONNX

        fast_model = OnnxColorizer(SHIPPED_ONNX)
    else:
        fast_model = model
    photos = {
        "astronaut.png": data.astronaut(),
        "coffee.png": data.coffee(),
        "chelsea.png": data.chelsea(),
    }
    for name, rgb in photos.items():
        save(tmp_path / "in" / name, cv2.resize(rgb, (257, 183), interpolation=cv2.INTER_AREA))
    results = colorize_files(
        fast_model,
        sorted((tmp_path / "in").iterdir()),
        tmp_path / "out",
        size=size,
        batch_size=2,
        workers=2,
        progress=False,
    )
    assert all(r.ok for r in results)
    for name in photos:
        L = rgb_to_lab(read_rgb(tmp_path / "in" / name))[..., 0]
        ab = predict_ab(model, working_l(L, size)[None])[0]
        plain = lab_to_rgb_exact(L, ab_to_size(ab, *L.shape))
        fast = read_rgb(tmp_path / "out" / name)
        diff = np.abs(fast.astype(int) - plain.astype(int)).max(axis=-1)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.02, name  # 1 level, at rounding ties
        assert np.abs(rgb_to_lab(fast)[..., 0] - L).max() <= 1.0, name  # lightness kept
