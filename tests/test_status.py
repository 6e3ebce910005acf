"""colorize.status: the status table's rows, a journal that survives a killed run and write
errors, and what --resume trusts (previous_status, source_stamp, run_settings).

Write errors are real: /dev/full, a file where a folder should be, and (in a private mount
namespace) a tmpfs that fills up or is read-only.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest
import torch

from colorize.status import (
    FATAL_WRITE_ERRNOS,
    STATUS_COLUMNS,
    Result,
    Results,
    StatusJournal,
    previous_status,
    run_settings,
    source_stamp,
)
from colorize.tsv import read_tsv, write_tsv
from helpers import in_private_mount, tiny_model

OK = Result("in/a.jpg", "out/a.jpg", "ok", "", 640, 480, "1234:5678", "abcd")
BAD = Result(
    "in/b.png", None, "failed", "not an image: truncated PNG", source="99:1", settings="abcd"
)
ODD = Result("in/tab\there.jpg", "out/tab\there.jpg", "ok", "", 3, 2, "1:2", "abcd")


def test_a_row_has_the_status_columns_in_order():
    assert tuple(OK.row()) == STATUS_COLUMNS
    assert OK.row() == {
        "input": "in/a.jpg",
        "status": "ok",
        "output": "out/a.jpg",
        "width": 640,
        "height": 480,
        "reason": "",
        "source": "1234:5678",
        "settings": "abcd",
    }
    # a failed file: no output, size unknown (empty, not 0), the reason said
    assert BAD.row()["output"] == BAD.row()["width"] == BAD.row()["height"] == ""
    assert BAD.row()["reason"] == "not an image: truncated PNG"
    assert OK.ok and not BAD.ok and not Result("x", None, "skipped").ok


def test_results_is_the_list_of_results_with_the_run_summary():
    results = Results([OK, BAD])
    assert list(results) == [OK, BAD]
    assert (results.status_path, results.resumed, results.stopped) == (None, 0, None)


def test_the_journal_holds_each_row_as_it_is_added_and_the_final_table_in_input_order(tmp_path):
    path = tmp_path / "status.tsv"
    journal = StatusJournal(path)
    assert read_tsv(path) == []  # the header, at once
    journal.add(BAD)  # finished first
    journal.add(ODD)
    rows = read_tsv(path)  # flushed: a reader sees them before the run ends
    assert [r["input"] for r in rows] == ["in/b.png", "in/tab\there.jpg"]
    assert journal.finish([OK, BAD, ODD]) == path  # rewritten whole, in input order
    assert read_tsv(path) == [{k: str(v) for k, v in r.row().items()} for r in (OK, BAD, ODD)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.tsv"]


JOURNAL_THEN_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from colorize.status import Result, StatusJournal
    journal = StatusJournal(sys.argv[1])
    journal.add(Result("in/1.jpg", "out/1.jpg", "ok", "", 4, 3, "10:20", "s1"))
    journal.add(Result("in/2.jpg", None, "failed", "decode error", source="11:21", settings="s1"))
    os.kill(os.getpid(), signal.SIGKILL)  # no finish(), no clean-up: a killed job
    """
)


def test_a_killed_run_leaves_the_rows_it_finished_and_resume_trusts_only_the_ok_ones(tmp_path):
    path = tmp_path / "status.tsv"
    proc = subprocess.run([sys.executable, "-c", JOURNAL_THEN_KILLED, str(path)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [(r["input"], r["status"]) for r in read_tsv(path)] == [
        ("in/1.jpg", "ok"),
        ("in/2.jpg", "failed"),
    ]
    done = previous_status(path)
    assert list(done) == ["in/1.jpg"] and done["in/1.jpg"]["source"] == "10:20"


def test_previous_status_keeps_only_ok_rows_with_settings(tmp_path):
    rows = [
        {"input": "a", "status": "ok", "settings": "s"},
        {"input": "b", "status": "failed", "settings": "s"},
        {"input": "c", "status": "ok", "settings": ""},  # a table from before settings existed
    ]
    write_tsv(rows, tmp_path / "status.tsv")
    assert list(previous_status(tmp_path / "status.tsv")) == ["a"]
    assert previous_status(tmp_path / "missing.tsv") == {}
    (tmp_path / "binary.tsv").write_bytes(b"input\tstatus\n\xff\xfe\tok\n")
    assert previous_status(tmp_path / "binary.tsv") == {}  # not a table we wrote: start afresh
    (tmp_path / "a_folder").mkdir()
    assert previous_status(tmp_path / "a_folder") == {}


def test_a_journal_that_cannot_be_written_as_the_run_goes_still_writes_the_final_table(
    tmp_path, caplog
):
    """/dev/full fails every write (ENOSPC): the run goes on, and the final table replaces the
    link with a complete file."""
    path = tmp_path / "status.tsv"
    path.symlink_to("/dev/full")
    with caplog.at_level(logging.WARNING, logger="colorize.infer"):
        journal = StatusJournal(path)
        journal.add(OK)  # no error: the journal is off
    assert f"cannot write the status table {path} as the run goes" in caplog.text
    assert "No space left on device" in caplog.text
    assert journal.finish([OK, BAD]) == path and not path.is_symlink()
    assert [r["input"] for r in read_tsv(path)] == ["in/a.jpg", "in/b.png"]


def test_a_table_that_cannot_be_written_anywhere_near_goes_to_the_temporary_folder(
    tmp_path, caplog, monkeypatch
):
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))  # tempfile's own setting, not a mock
    (tmp_path / "a_file").write_text("in the way")
    path = tmp_path / "a_file" / "status.tsv"  # its folder is a file
    with caplog.at_level(logging.WARNING, logger="colorize.infer"):
        journal = StatusJournal(path)
        journal.add(OK)
        where = journal.finish([OK, BAD])
    assert where == spare / f"colorize-status-{os.getpid()}.tsv"
    assert [r["input"] for r in read_tsv(where)] == ["in/a.jpg", "in/b.png"]
    assert (
        f"could not write the status table to {path}" in caplog.text and str(where) in caplog.text
    )


# The disk is full or read-only for real: a tmpfs in a private mount namespace. The journal runs
# inside it; what it returned and what the table holds are printed.
JOURNAL_ON_DISK = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from colorize.status import Result, StatusJournal
    from colorize.tsv import read_tsv
    disk, full = Path(sys.argv[1]), sys.argv[2] == "full"
    path = disk / "status.tsv"
    results = [Result(f"in/{i:03d}-{'x' * 150}.jpg", f"out/{i:03d}.jpg", "ok", "", 8, 8, "1:1", "s")
               for i in range(100)]  # ~19 kB of table
    if full:
        StatusJournal(path).finish(results)  # a previous run's table, as big
        with open(disk / "filler", "wb", buffering=0) as fh:  # then the disk fills up, all but 12 kB
            try:
                while True:
                    fh.write(b"f" * 4096)
            except OSError:
                pass
        os.truncate(disk / "filler", os.path.getsize(disk / "filler") - 12288)
    journal = StatusJournal(path)
    for r in results:
        journal.add(r)
    inode = path.stat().st_ino if path.exists() else None
    where = journal.finish(results)
    print("returned", where == path, where.parent == disk)
    print("rewritten in place", where.stat().st_ino == inode)
    print("rows", len(read_tsv(where)), read_tsv(where)[-1]["input"][:7])
    print("temporaries", sorted(p.name for p in disk.iterdir() if ".tmp" in p.name))
    """
)


def test_on_a_full_disk_the_final_table_is_rewritten_in_place(tmp_path):
    """No room for a second copy beside the first, but room for a rewrite."""
    disk = tmp_path / "disk"
    disk.mkdir()
    res = in_private_mount(
        'mount -t tmpfs -o size=96k tmpfs "$1" && "$2" -c "$3" "$1" full',
        disk,
        sys.executable,
        JOURNAL_ON_DISK,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "returned True True",
        "rewritten in place True",  # not renamed over: the atomic copy found no room
        "rows 100 in/099-",
        "temporaries []",
    ]
    roomy = in_private_mount(  # the control: with room, the table is renamed over, as usual
        'mount -t tmpfs -o size=1m tmpfs "$1" && "$2" -c "$3" "$1" roomy',
        disk,
        sys.executable,
        JOURNAL_ON_DISK,
    )
    assert roomy.returncode == 0, roomy.stderr
    assert roomy.stdout.splitlines()[:2] == ["returned True True", "rewritten in place False"]


def test_on_a_read_only_disk_the_final_table_goes_to_the_temporary_folder(tmp_path):
    disk, spare = tmp_path / "disk", tmp_path / "spare"
    disk.mkdir()
    spare.mkdir()
    res = in_private_mount(
        'mount -t tmpfs -o ro,size=1m tmpfs "$1" && TMPDIR="$4" "$2" -c "$3" "$1" ro',
        disk,
        sys.executable,
        JOURNAL_ON_DISK,
        spare,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "returned False False",
        "rewritten in place False",
        "rows 100 in/099-",
        "temporaries []",
    ]
    assert "Read-only file system" in res.stderr
    assert [p.name for p in spare.iterdir()] == [
        p.name for p in spare.glob("colorize-status-*.tsv")
    ]
    assert len(list(spare.iterdir())) == 1


def test_a_full_disk_gives_an_errno_that_stops_the_run():
    with open("/dev/full", "wb", buffering=0) as fh, pytest.raises(OSError) as raised:
        fh.write(b"an output image")
    assert raised.value.errno == errno.ENOSPC and raised.value.errno in FATAL_WRITE_ERRNOS
    assert errno.EROFS in FATAL_WRITE_ERRNOS and errno.EDQUOT in FATAL_WRITE_ERRNOS
    assert errno.EACCES not in FATAL_WRITE_ERRNOS  # one unwritable file costs only that file


def test_source_stamp_is_size_and_modification_time(tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"12345")
    os.utime(photo, ns=(1_000_000_000, 2_000_000_123))
    assert source_stamp(photo) == "5:2000000123"
    assert source_stamp(str(photo)) == "5:2000000123"
    os.utime(photo, ns=(1_000_000_000, 2_000_000_124))  # touched: a new stamp, redone on resume
    assert source_stamp(photo) == "5:2000000124"
    photo.write_bytes(b"123456")
    os.utime(photo, ns=(1_000_000_000, 2_000_000_124))  # same time, other size
    assert source_stamp(photo) == "6:2000000124"
    assert source_stamp(tmp_path / "gone.jpg") == ""


def test_run_settings_change_with_the_weights_and_the_options_only():
    model = tiny_model()
    same = run_settings(model, size=128, jpeg_quality=95)
    assert len(same) == 16 and int(same, 16) >= 0
    assert run_settings(model, jpeg_quality=95, size=128) == same  # option order is no change
    assert run_settings(tiny_model(), size=128, jpeg_quality=95) == same  # same weights (seeded)
    assert run_settings(model, size=256, jpeg_quality=95) != same
    assert run_settings(model, size=128, jpeg_quality=90) != same
    other = tiny_model()
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert run_settings(other, size=128, jpeg_quality=95) != same
