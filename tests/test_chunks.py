"""colorize.chunks: a photo's chunk depends only on its name, chunked runs write the bytes and rows of
one run, a rerun redoes only what changed, and chunk tables gather into one (or say what is wrong)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path, PurePath

import pytest
import torch

from colorize.chunks import (
    GatherError,
    check_chunk,
    chunk_fingerprints,
    chunk_of,
    chunk_status_name,
    colorize_chunk,
    folder_inputs,
    gather_status,
    select_chunk,
)
from colorize.infer import colorize_files
from colorize.status import STATUS_COLUMNS
from colorize.tsv import read_tsv, write_tsv
from helpers import save, smooth_image, tinted_model

SIZE = 32  # working size: small, so the tests stay fast on two cores
N = 3

torch.set_num_threads(1)


def test_a_photos_chunk_depends_only_on_its_name():
    names = [f"scans/{i:05d}.jpg" for i in range(3000)]
    chunks = {n: chunk_of(n, 8) for n in names}
    assert set(chunks.values()) == set(range(1, 9))  # chunks count from 1
    assert min(Counter(chunks.values()).values()) > 3000 / 8 * 0.8  # and are about even
    assert {n: chunk_of(n, 8) for n in reversed(names)} == chunks
    assert chunk_of(PurePath("scans/00001.jpg"), 8) == chunks["scans/00001.jpg"]


def test_files_that_would_write_the_same_output_share_a_chunk():
    # a.gif -> a.png; A.JPG and a.jpg clash on a case-insensitive disk
    for n in (2, 3, 7, 50):
        assert chunk_of("x/a.gif", n) == chunk_of("x/a.png", n) == chunk_of("x/a.tga", n)
        assert chunk_of("X/A.JPG", n) == chunk_of("x/a.jpg", n)
    assert len({chunk_of(f"x/{i}.png", 50) for i in range(20)}) > 1  # the stem does decide


def test_chunk_numbers_are_checked_and_table_names_sort_by_chunk():
    for k, n in [(0, 3), (4, 3), (1, 0)]:
        with pytest.raises(ValueError):
            check_chunk(k, n)
    assert chunk_status_name(3, 12) == "status.chunk-03-of-12.tsv"
    assert chunk_status_name(1, 1) == "status.chunk-1-of-1.tsv"


@pytest.fixture
def photos(tmp_path) -> Path:
    """Photos of several formats and sizes, one in a sub-folder, two that clash, one broken."""
    src = tmp_path / "in"
    save(src / "a.gif", smooth_image(30, 40, 1))
    save(
        src / "a.png", smooth_image(30, 40, 2)
    )  # would overwrite a.gif's output: fails, chunked or not
    save(src / "sub" / "b.jpg", smooth_image(45, 67, 3), quality=90)
    save(src / "c.tif", smooth_image(33, 21, 4))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    for i in range(5):
        save(src / f"p{i}.png", smooth_image(20 + i, 30, 10 + i))
    return src


def image_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def colorize_in_chunks(model, src: Path, out: Path, n: int) -> list[Path]:
    tables = []
    for k in range(1, n + 1):
        inputs = select_chunk(folder_inputs(src), k, n)
        tables.append(out.parent / chunk_status_name(k, n))
        colorize_files(
            model,
            inputs,
            out,
            size=SIZE,
            batch_size=2,
            workers=1,
            progress=False,
            status_path=tables[-1],
        )
    return tables


def test_chunked_runs_write_the_bytes_and_rows_of_one_run(photos, tmp_path):
    model = tinted_model()
    out = tmp_path / "out"
    colorize_files(
        model,
        folder_inputs(photos),
        out,
        size=SIZE,
        batch_size=4,
        workers=2,
        progress=False,
        status_path=tmp_path / "status.tsv",
    )
    one_run = image_bytes(out), (tmp_path / "status.tsv").read_bytes()
    shutil.rmtree(out)

    tables = colorize_in_chunks(model, photos, out, N)
    assert all(read_tsv(t) for t in tables)  # every chunk has photos here
    rows = gather_status(tables, tmp_path / "gathered.tsv")
    assert (image_bytes(out), (tmp_path / "gathered.tsv").read_bytes()) == one_run
    assert len(rows) == 10 and sorted(image_bytes(out)) == [
        "a.png",
        "c.tif",
        "p0.png",
        "p1.png",
        "p2.png",
        "p3.png",
        "p4.png",
        "sub/b.jpg",
    ]
    (clash,) = [r for r in rows if r["input"].endswith("a.png")]
    assert "would overwrite the one from" in clash["reason"]


def run_chunk(model, src, k, out, work):
    return colorize_chunk(
        model,
        src,
        k,
        N,
        out,
        work / chunk_status_name(k, N),
        work / "resume" / chunk_status_name(k, N),
        size=SIZE,
        workers=1,
        progress=False,
    )


def test_a_rerun_of_a_chunk_redoes_only_what_is_missing_or_changed(photos, tmp_path):
    model = tinted_model()
    out, work = tmp_path / "images", tmp_path / "chunks"
    first = {k: run_chunk(model, photos, k, out, work) for k in range(1, N + 1)}
    before = image_bytes(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert sum(len(r) for r in first.values()) == 10 and not any(r.resumed for r in first.values())

    # a killed job's rerun: its journal survives, one output is gone
    k_b = chunk_of("sub/b.jpg", N)
    (out / "sub" / "b.jpg").unlink()
    (work / chunk_status_name(k_b, N)).unlink()
    again = run_chunk(model, photos, k_b, out, work)
    assert again.resumed == sum(r.ok for r in first[k_b]) - 1
    assert image_bytes(out) == before
    assert [p for p, t in stamps.items() if p.exists() and p.stat().st_mtime_ns != t] == [
        out / "sub" / "b.jpg"
    ]

    # a photo leaves the folder: its chunk's rerun removes its output, and only that
    k_p = chunk_of("p3.png", N)
    (photos / "p3.png").unlink()
    run_chunk(model, photos, k_p, out, work)
    assert sorted(set(before) - set(image_bytes(out))) == ["p3.png"]
    assert "p3.png" not in (work / chunk_status_name(k_p, N)).read_text()


def test_a_chunks_fingerprint_changes_only_with_its_own_photos(photos):
    before = chunk_fingerprints(folder_inputs(photos), N)
    assert sorted(before) == list(range(1, N + 1))
    new = next(f"new{i}.png" for i in range(100) if chunk_of(f"new{i}.png", N) == 2)
    save(photos / new, smooth_image(20, 20, 99))
    after = chunk_fingerprints(folder_inputs(photos), N)
    assert {k for k in before if before[k] != after[k]} == {2}
    touched = next(rel for _, rel, _ in folder_inputs(photos) if chunk_of(rel, N) != 2)
    save(photos / touched, smooth_image(20, 21, 98))
    assert {
        k for k, v in chunk_fingerprints(folder_inputs(photos), N).items() if v != after[k]
    } == {chunk_of(touched, N)}


def status_table(path: Path, *inputs: str) -> Path:
    return write_tsv([{"input": i, "status": "ok"} for i in inputs], path, STATUS_COLUMNS)


def test_gathering_refuses_an_incomplete_or_mixed_set(tmp_path):
    t = {k: status_table(tmp_path / chunk_status_name(k, 3), f"in/{k}.png") for k in (1, 2, 3)}
    with pytest.raises(GatherError, match=r"missing chunk\(s\) 2 of 3: no status.chunk-2-of-3.tsv"):
        gather_status([t[1], t[3]], tmp_path / "out.tsv")
    other = status_table(tmp_path / chunk_status_name(1, 2), "in/x.png")
    with pytest.raises(GatherError, match="different chunk counts"):
        gather_status([t[1], t[2], t[3], other], tmp_path / "out.tsv")
    twice = status_table(tmp_path / "again" / chunk_status_name(2, 3), "in/2.png")
    with pytest.raises(GatherError, match="chunk 2 of 3 is given twice"):
        gather_status([t[1], t[2], t[3], twice], tmp_path / "out.tsv")
    with pytest.raises(GatherError, match="in/2.png is in both"):
        gather_status([t[2], status_table(tmp_path / "mine.tsv", "in/2.png")], tmp_path / "out.tsv")
    with pytest.raises(GatherError, match="no such file"):
        gather_status([tmp_path / "theirs.tsv"], tmp_path / "out.tsv")
    (tmp_path / "notes.tsv").write_text("name\tvalue\n")
    with pytest.raises(GatherError, match="not a colorize status table"):
        gather_status([tmp_path / "notes.tsv"], tmp_path / "out.tsv")
    assert not (tmp_path / "out.tsv").exists()
    mine = status_table(
        tmp_path / "mine.tsv", "in/b/0.png", "in/a.png"
    )  # any names, taken as they are
    rows = gather_status([mine, t[3], t[1], t[2]], tmp_path / "out.tsv")
    assert [r["input"] for r in rows] == [
        "in/1.png",
        "in/2.png",
        "in/3.png",
        "in/a.png",
        "in/b/0.png",
    ]


def test_a_name_that_is_not_utf8_has_a_chunk():
    """Linux lets a name hold any bytes: its chunk is that of its \\xNN form, not a crash."""
    name = os.fsdecode(b"caf\xe9.jpg")
    assert chunk_of(name, N) == chunk_of("caf\\xe9.jpg", N)
    assert 1 <= chunk_of(name, N) <= N
