"""colorize.cli: the ``colorize`` console command, run as a user would (a subprocess of the venv's script)."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize.chunks import chunk_of
from colorize.cli import build_parser, main
from colorize.status import STATUS_COLUMNS
from colorize.tsv import read_tsv
from helpers import in_private_mount

COLORIZE = Path(sys.executable).with_name("colorize")  # the console script installed beside python


def run(*args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLORIZE_DEVICE="cpu", OMP_NUM_THREADS="1")
    return subprocess.run(
        [str(COLORIZE), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 225, (h, w, 3), dtype=np.uint8)


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_help_mentions_every_option():
    assert COLORIZE.exists(), f"console script missing: {COLORIZE}"
    top = run("--help")
    assert top.returncode == 0 and "predict" in top.stdout and "evaluate" in top.stdout
    assert "gather-status" in top.stdout
    predict = run("predict", "--help")
    assert predict.returncode == 0
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "predict"
    ]
    options = option_strings(sub)
    expected = {
        "--model",
        "--output",
        "--size",
        "--batch-size",
        "--device",
        "--workers",
        "--recursive",
        "--status",
        "--max-pixels",
        "--jpeg-quality",
        "--quiet",
        "--resume",
        "--chroma-gain",
        "--chunk",
    }
    assert expected <= options
    for opt in options:
        assert opt in predict.stdout, f"{opt} missing from 'colorize predict --help'"
    assert "INPUT" in predict.stdout and "auto" in predict.stdout and "cuda" in predict.stdout


def test_the_help_states_the_decoders_real_pixel_limit():
    """--help spells the default out (the parser does not import the decoder, for start-up
    time); it must stay the number the decoder enforces."""
    from colorize.imageio import DEFAULT_MAX_PIXELS

    sub = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["predict"]
    (action,) = [a for a in sub._actions if "--max-pixels" in a.option_strings]
    assert f"(default: {DEFAULT_MAX_PIXELS})" in action.help


def test_predict_colorizes_good_files_and_lists_bad_ones(tmp_path, checkpoint_file):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    Image.fromarray(photo(37, 53, 1)).save(src / "a.jpg", quality=95)
    Image.fromarray(photo(53, 37, 2)[..., 0]).save(src / "trip" / "b.png")  # grayscale
    full = io.BytesIO()
    Image.fromarray(photo(120, 160, 3)).save(full, format="JPEG")
    (src / "cut.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (src / "empty.png").write_bytes(b"")
    (src / "letter.jpg").write_text("Dear user, this is not a JPEG.\n")
    out = tmp_path / "out"

    res = run(
        "predict",
        "--model",
        checkpoint_file,
        "--output",
        out,
        "--size",
        "32",
        "--batch-size",
        "2",
        "--workers",
        "2",
        "--device",
        "cpu",
        "--recursive",
        src,
    )
    assert res.returncode == 0, res.stderr
    assert (
        "colorized 2 of 5" in res.stdout
        and "3 failed" in res.stdout
        and str(out / "status.tsv") in res.stdout
    )
    with Image.open(out / "a.jpg") as im:
        assert im.size == (53, 37) and im.mode == "RGB"
    with Image.open(out / "trip" / "b.png") as im:
        assert im.size == (37, 53) and im.mode == "RGB"

    rows = {Path(r["input"]).name: r for r in read_tsv(out / "status.tsv")}
    assert list(next(iter(rows.values()))) == list(STATUS_COLUMNS)
    assert rows["a.jpg"]["status"] == rows["b.png"]["status"] == "ok"
    assert "truncated" in rows["cut.jpg"]["reason"]
    assert "empty" in rows["empty.png"]["reason"]
    assert "not an image" in rows["letter.jpg"]["reason"]
    for name in ("cut.jpg", "empty.png", "letter.jpg"):
        assert rows[name]["status"] == "failed" and not (out / name).exists()
        assert name in res.stderr  # each failure is also named on the console


def test_predict_exit_codes(tmp_path, checkpoint_file):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    nothing = run("predict", "-m", checkpoint_file, "-o", tmp_path / "out", "--quiet", bad)
    assert nothing.returncode == 1 and "colorized 0 of 1" in nothing.stdout
    no_model = run("predict", "-m", tmp_path / "missing.pt", "-o", tmp_path / "out", bad)
    assert no_model.returncode == 2 and "missing.pt" in no_model.stderr
    no_input = run("predict", "-m", checkpoint_file, "-o", tmp_path / "out")
    assert no_input.returncode == 2


# -- what a real machine does to a run (issue 9) --------------------------------------------------


def test_an_output_folder_that_cannot_be_written_fails_up_front(tmp_path, checkpoint_file):
    img = tmp_path / "a.jpg"
    Image.fromarray(photo(40, 50, 1)).save(img)
    (tmp_path / "a_file").write_text("in the way")
    res = run("predict", "-m", checkpoint_file, "-o", tmp_path / "a_file" / "out", img)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"colorize predict: error: output: cannot write to {tmp_path / 'a_file' / 'out'}: Not a directory"
    ]
    # a read-only file system (as root, permission bits would not stop a write: a real ro mount)
    ro = tmp_path / "ro"
    ro.mkdir()
    res = in_private_mount(
        'mount -t tmpfs -o ro,size=1m tmpfs "$1" && exec "$2" predict -q -m "$3" -o "$1/out" "$4"',
        ro,
        COLORIZE,
        checkpoint_file,
        img,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"colorize predict: error: output: cannot write to {ro}/out: Read-only file system"
    )
    assert not list(ro.iterdir())


def test_a_disk_that_fills_up_mid_run_stops_cleanly_with_a_complete_status_table(
    tmp_path, checkpoint_file
):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(8):  # noisy 320x320 photos: ~250 KB PNG outputs each
        Image.fromarray(photo(320, 320, i)).save(src / f"p{i}.png")
    disk = tmp_path / "disk"
    disk.mkdir()
    keep = tmp_path / "after"
    res = in_private_mount(
        'mount -t tmpfs -o size=640k tmpfs "$1" && "$2" predict -m "$3" -o "$1/out" --size 32 --workers 1 '
        '--batch-size 1 "$4"; rc=$?; cp -a "$1/out" "$5"; exit $rc',
        disk,
        COLORIZE,
        checkpoint_file,
        src,
        keep,
    )
    assert res.returncode == 3, (
        res.stderr
    )  # incomplete: its own exit status, although some were colorized
    assert (
        "Traceback" not in res.stderr
        and "stopped early: the run stopped after a write failed" in res.stderr
    )
    rows = read_tsv(keep / "status.tsv")
    assert [Path(r["input"]).name for r in rows] == [
        f"p{i}.png" for i in range(8)
    ]  # complete, in order
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert ok and failed and len(ok) + len(failed) == 8
    assert any("No space left on device" in r["reason"] for r in failed)
    assert all(
        "No space left" in r["reason"] or r["reason"].startswith("not attempted") for r in failed
    )
    for r in ok:
        with Image.open(keep / Path(r["output"]).name) as im:
            assert im.size == (320, 320)
    assert not [p.name for p in keep.iterdir() if ".tmp" in p.name]  # no temporary file left behind
    for r in failed:
        assert not (keep / Path(r["input"]).name).exists()


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "empty file"),
        (b"hello, I am text\n", "not a PyTorch file"),
        (None, "without the model's settings"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path, content, why):
    bad = tmp_path / "model.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, bad)  # a PyTorch file, but not ours
    else:
        bad.write_bytes(content)
    img = tmp_path / "a.jpg"
    Image.fromarray(photo(40, 50, 1)).save(img)
    res = run("predict", "-q", "-m", bad, "-o", tmp_path / "out", img)
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert (
        last.startswith(f"colorize predict: error: --model {bad}: not a colorize checkpoint")
        and why in last
    )
    assert "Traceback" not in res.stderr


def test_evaluate_names_a_file_that_is_not_a_shard(tmp_path, checkpoint_file):
    import h5py

    def evaluate(shard):
        tables = ("--per-image", tmp_path / "p.tsv", "--summary", tmp_path / "s.tsv")
        return run("evaluate", "-q", "-m", checkpoint_file, *tables, shard)

    bad = tmp_path / "photos.h5"
    bad.write_text("not hdf5")
    res = evaluate(bad)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"colorize evaluate: error: SHARD {bad}: not an HDF5 file "
        "(a shard is the .h5 a shard job writes)"
    )
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = [1, 2, 3]
    res = evaluate(tmp_path / "other.h5")
    assert res.returncode == 2 and "not a colorize shard (no L, ab, relpath dataset)" in res.stderr


def test_predict_resumes_and_redoes_what_changed(tmp_path, checkpoint_file):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(4):
        Image.fromarray(photo(30, 40, i)).save(src / f"p{i}.jpg")
    out = tmp_path / "out"
    first = run("predict", "-m", checkpoint_file, "-o", out, "--size", "32", src)
    assert first.returncode == 0 and "colorized 4 of 4" in first.stdout
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    rows = read_tsv(out / "status.tsv")
    assert all(r["settings"] and r["source"] for r in rows)

    # a run killed part-way: one output and its status row are gone; a new photo arrived
    (out / "p2.jpg").unlink()
    Image.fromarray(photo(30, 40, 9)).save(src / "p4.jpg")
    again = run("predict", "-m", checkpoint_file, "-o", out, "--size", "32", src)
    assert (
        again.returncode == 0
        and "colorized 5 of 5" in again.stdout
        and "(3 already done)" in again.stdout
    )
    now = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    assert sorted(n for n in stamps if now[n] == stamps[n]) == [
        "p0.jpg",
        "p1.jpg",
        "p3.jpg",
    ]  # untouched
    assert len(read_tsv(out / "status.tsv")) == 5

    # a changed input or a changed option redoes the affected outputs
    Image.fromarray(photo(30, 40, 7)).save(src / "p0.jpg")
    changed = run("predict", "-m", checkpoint_file, "-o", out, "--size", "32", src)
    assert "(4 already done)" in changed.stdout
    other_size = run("predict", "-m", checkpoint_file, "-o", out, "--size", "48", src)
    assert "already done" not in other_size.stdout and "colorized 5 of 5" in other_size.stdout
    settings = {r["settings"] for r in read_tsv(out / "status.tsv")}
    assert len(settings) == 1 and settings != {rows[0]["settings"]}
    forced = run("predict", "-m", checkpoint_file, "-o", out, "--size", "48", "--no-resume", src)
    assert "already done" not in forced.stdout


def test_predict_without_a_model_uses_the_shipped_one(tmp_path):
    from skimage import data

    from colorize.colorspace import mean_chroma
    from colorize.metrics import ab_of_rgb

    gray = tmp_path / "scan.png"
    Image.fromarray(np.asarray(Image.fromarray(data.astronaut()).convert("L"))).save(gray)
    res = run("predict", "-q", "-o", tmp_path / "out", gray)
    assert res.returncode == 0, res.stderr
    with Image.open(tmp_path / "out" / "scan.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape == (512, 512, 3)
    plain = mean_chroma(ab_of_rgb(rgb))
    assert plain > 3  # colour, not gray
    vivid = run("predict", "-q", "-o", tmp_path / "vivid", "--chroma-gain", "1.3", gray)
    assert vivid.returncode == 0, vivid.stderr
    with Image.open(tmp_path / "vivid" / "scan.png") as im:
        assert mean_chroma(ab_of_rgb(np.asarray(im.convert("RGB")))) > 1.15 * plain


# -- one archive, several jobs: --chunk K/N and gather-status (issue 14) ----------------------------


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_predict_in_chunks_gathers_to_what_one_run_writes_and_resumes(tmp_path, checkpoint_file):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(photo(30 + i, 40, i)).save(src / ("trip" if i % 2 else ".") / f"p{i}.png")
    (src / "broken.jpg").write_text("not a JPEG")
    (src / "gone.jpg").symlink_to("nowhere.jpg")  # a skipped row, in its chunk's table
    out = tmp_path / "out"
    common = ("-m", checkpoint_file, "-o", out, "--size", "32", "-r", "-q")
    assert run("predict", *common, src).returncode == 0
    out.rename(tmp_path / "one_run")

    for k in (1, 2):
        res = run("predict", *common, "--chunk", f"{k}/2", src)
        assert res.returncode == 0, res.stderr
        assert (
            f"in chunk {k}/2 (7 in all)" in res.stdout
            and str(out / f"status.chunk-{k}-of-2.tsv") in res.stdout
        )
    tables = sorted(out.glob("status.chunk-*-of-2.tsv"))
    res = run("gather-status", "-o", out / "status.tsv", *tables)
    assert res.returncode == 0, res.stderr
    assert "gathered 7 images from 2 tables" in res.stdout
    assert "5 colorized, 1 failed, 1 skipped" in res.stdout
    gathered = {k: v for k, v in files_in(out).items() if not k.startswith("status.chunk-")}
    assert gathered == files_in(
        tmp_path / "one_run"
    )  # every image and the status table, byte for byte

    # a chunk's rerun after one of its outputs was lost: only that photo is done again
    mine = [
        r
        for r in read_tsv(out / "status.tsv")
        if r["status"] == "ok" and chunk_of(Path(r["output"]).relative_to(out), 2) == 1
    ]
    assert mine
    Path(mine[0]["output"]).unlink()
    again = run("predict", *common, "--chunk", "1/2", src)
    assert again.returncode == 0 and f"({len(mine) - 1} already done)" in again.stdout
    assert gathered.items() <= files_in(out).items()  # the same bytes again


@pytest.mark.parametrize(
    "value, says",
    [
        ("0/4", "chunk 0 of 4 does not exist: chunks count from 1 to 4"),
        ("5/4", "chunk 5 of 4 does not exist"),
        ("3/0", "at least 1"),
        ("3", "'3' is not K/N (e.g. 3/8"),
        ("a/b", "is not K/N"),
    ],
)
def test_a_bad_chunk_is_a_usage_error_naming_the_option(value, says, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["predict", "-o", "out", "--chunk", value, "photos"])
    err = capsys.readouterr().err
    assert (
        exit.value.code == 2
        and "colorize predict: error: argument --chunk: " in err
        and says in err
    )


def test_gather_status_names_a_missing_chunk(tmp_path, capsys):
    from colorize.chunks import chunk_status_name
    from colorize.tsv import write_tsv

    tables = [write_tsv([], tmp_path / chunk_status_name(k, 3), STATUS_COLUMNS) for k in (1, 3)]
    with pytest.raises(SystemExit) as exit:
        main(["gather-status", "-o", str(tmp_path / "status.tsv"), *map(str, tables)])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "colorize gather-status: error: missing chunk(s) 2 of 3: no "
        "status.chunk-2-of-3.tsv given (has its job finished?)"
    )
    assert not (tmp_path / "status.tsv").exists()


def test_evaluate_by_source_writes_a_row_per_source_and_method(tmp_path, checkpoint_file, shards):
    """--by-source: an image's source is the first folder of its name (here the shard's stem)."""
    res = run(
        "evaluate",
        "-q",
        "-m",
        checkpoint_file,
        "--per-image",
        tmp_path / "p.tsv",
        "--summary",
        tmp_path / "s.tsv",
        "--by-source",
        tmp_path / "b.tsv",
        *shards["train"],
    )
    assert res.returncode == 0, res.stderr
    assert "vivid hits" in res.stdout and "pooled" in res.stdout
    rows = read_tsv(tmp_path / "b.tsv")
    assert [(r["source"], r["n_images"]) for r in rows] == [
        ("train-000", "6"),
        ("train-000", "6"),
        ("train-001", "5"),
        ("train-001", "5"),
    ]
    assert {r["method"] for r in rows} == {"model", "gray"}
