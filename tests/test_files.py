"""colorize.files: an output appears whole or not at all, the old one stays until the new is
complete, nothing temporary is left behind; the one file hash.

Failures are real: a writer that raises part-way, a file that cannot be pickled, a missing
source, and (in a private mount namespace) a tmpfs that fills up or is read-only.
"""

from __future__ import annotations

import hashlib
import os
import sys
import textwrap

import numpy as np
import pytest
import torch

from colorize.files import (
    atomic_copy,
    atomic_path,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    sha256_file,
    temp_path,
)
from helpers import in_private_mount


class WriterFailed(Exception):
    pass


def test_the_temporary_name_is_hidden_beside_the_output_with_its_extension(tmp_path):
    out = tmp_path / "grid.png"
    tmp = temp_path(out)
    assert tmp.parent == out.parent  # same folder, so the rename is atomic (one file system)
    assert tmp.name.startswith(".") and tmp.name.endswith(
        f".tmp{os.getpid()}.png"
    )  # hidden; per process; .png
    assert len(tmp.name) < 40  # short whatever the name's length (issue 21)
    assert temp_path(tmp_path / "a.tar.gz").name.endswith(f".tmp{os.getpid()}.gz")
    assert temp_path(tmp_path / "a.png") != tmp  # one per file
    assert temp_path(str(out)) == tmp  # a str is a path too


def test_the_output_appears_complete_only_when_the_block_ends(tmp_path):
    out = tmp_path / "new" / "deeper" / "table.tsv"  # missing folders are made
    with atomic_path(out) as tmp:
        tmp.write_text("half")
        assert not out.exists()  # a reader sees nothing yet, never half a file
        tmp.write_text("all of it\n")
    assert out.read_text() == "all of it\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["table.tsv"]


@pytest.mark.parametrize("error", [WriterFailed("disk gone"), KeyboardInterrupt()])
def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, error):
    out = tmp_path / "summary.tsv"
    out.write_text("the previous run\n")
    with pytest.raises(type(error)) as raised:
        with atomic_path(out) as tmp:
            tmp.write_text("the new run, cut sh")
            raise error
    assert raised.value is error  # the writer's own error, not one from the clean-up
    assert out.read_text() == "the previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.tsv"]


def test_a_writer_that_fails_before_writing_leaves_no_output(tmp_path):
    out = tmp_path / "model.pt"
    with pytest.raises(WriterFailed):
        with atomic_path(out):
            raise WriterFailed  # nothing written: no temporary to remove, no error from that
    assert list(tmp_path.iterdir()) == []


def test_without_mkdir_a_missing_folder_is_an_error_and_is_not_made(tmp_path):
    out = tmp_path / "missing" / "x.txt"
    with pytest.raises(FileNotFoundError):
        with atomic_path(out, mkdir=False) as tmp:
            tmp.write_text("x")
    assert not (tmp_path / "missing").exists()


def test_replacing_a_file_is_a_rename_not_an_overwrite(tmp_path):
    """A reader that opened the old file reads the old bytes to the end; the new file is a new
    inode. A symlink at the output's name is replaced, its target left alone."""
    out = tmp_path / "status.tsv"
    out.write_text("old\n" * 1000)
    old_inode = out.stat().st_ino
    with open(out) as reader:
        reader.read(4)
        atomic_write_text(out, "new\n")
        assert reader.read() == "old\n" * 999
    assert out.read_text() == "new\n" and out.stat().st_ino != old_inode

    target = tmp_path / "elsewhere.tsv"
    target.write_text("the link's target\n")
    link = tmp_path / "link.tsv"
    link.symlink_to(target)
    atomic_write_text(link, "written\n")
    assert not link.is_symlink() and link.read_text() == "written\n"
    assert target.read_text() == "the link's target\n"


def test_bytes_text_and_copies(tmp_path):
    pixels = np.arange(5000, dtype=np.uint16).reshape(50, 100)
    out = atomic_write_bytes(tmp_path / "raw.bin", pixels)  # a numpy buffer, as infer writes one
    assert out == tmp_path / "raw.bin" and out.read_bytes() == pixels.tobytes()
    text = atomic_write_text(str(tmp_path / "t.txt"), "Ünïcode\tand\nlines\r\n")
    assert text.read_bytes() == "Ünïcode\tand\nlines\r\n".encode()  # UTF-8, newlines as given
    copy = atomic_copy(out, tmp_path / "copies" / "raw.bin")
    assert copy.read_bytes() == out.read_bytes()


def test_a_copy_of_a_missing_file_fails_and_keeps_the_old_copy(tmp_path):
    dst = tmp_path / "table.tsv"
    dst.write_text("kept\n")
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "gone.tsv", dst)
    assert dst.read_text() == "kept\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "table.tsv"
    ]


def test_torch_save_round_trips_and_an_unpicklable_object_leaves_nothing(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": 7}
    path = atomic_torch_save(state, tmp_path / "best.pt")
    back = torch.load(path, weights_only=True)
    assert back["step"] == 7 and torch.equal(back["model"]["w"], state["model"]["w"])

    with pytest.raises(Exception, match="pickle|lambda"):  # torch has begun the file by then
        atomic_torch_save({"model": state["model"], "hook": lambda x: x}, path)
    assert torch.equal(torch.load(path, weights_only=True)["model"]["w"], state["model"]["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_sha256_reads_in_chunks_and_matches_hashlib(tmp_path):
    data = os.urandom(10_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    assert sha256_file(path, bufsize=333) == expected  # chunk boundaries change nothing
    (tmp_path / "empty").write_bytes(b"")
    empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_file(tmp_path / "empty") == empty_sha256


# A full and a read-only disk, for real: a tmpfs in a private mount namespace. The Python part
# runs inside it and prints what it found.
ON_A_SMALL_DISK = textwrap.dedent(
    """
    import errno, os, sys
    from pathlib import Path
    from colorize.files import atomic_write_bytes
    disk = Path(sys.argv[1])
    old = atomic_write_bytes(disk / "out.bin", b"o" * 20_000)
    try:
        atomic_write_bytes(disk / "out.bin", os.urandom(200_000))  # more than the disk holds
    except OSError as e:
        print("error", errno.errorcode[e.errno])
    print("old kept", old.read_bytes() == b"o" * 20_000)
    print("files", sorted(p.name for p in disk.iterdir()))
    """
)
ON_A_READ_ONLY_DISK = textwrap.dedent(
    """
    import errno, sys
    from pathlib import Path
    from colorize.files import atomic_write_text
    disk = Path(sys.argv[1])
    try:
        atomic_write_text(disk / "out.txt", "new")
    except OSError as e:
        print("error", errno.errorcode[e.errno])
    print("old kept", (disk / "out.txt").read_text() == "old")
    print("files", sorted(p.name for p in disk.iterdir()))
    """
)


def test_a_disk_that_fills_up_leaves_the_old_file_and_no_partial_one(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    res = in_private_mount(
        'mount -t tmpfs -o size=64k tmpfs "$1" && "$2" -c "$3" "$1"',
        disk,
        sys.executable,
        ON_A_SMALL_DISK,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["error ENOSPC", "old kept True", "files ['out.bin']"]


def test_a_read_only_disk_leaves_the_old_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    res = in_private_mount(
        'mount -t tmpfs -o size=1m tmpfs "$1" && printf old > "$1/out.txt" '
        '&& mount -o remount,ro "$1" && "$2" -c "$3" "$1"',
        disk,
        sys.executable,
        ON_A_READ_ONLY_DISK,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["error EROFS", "old kept True", "files ['out.txt']"]
