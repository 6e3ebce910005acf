"""End-to-end: `colorize.chunks` spreads colorize_folder over jobs that write the images and the
status table of one job, byte for byte, and a rerun runs only the chunks whose photos changed
(issue 14). Only the colorize targets run, with the shipped model: no data stage, no training.
"""

from __future__ import annotations

import shutil

import pytest

from colorize.chunks import chunk_of
from colorize.tsv import read_tsv
from conftest import colour_photo, save
from workflow_utils import (
    copy_workflow,
    planned_jobs,
    planned_outputs,
    snakemake,
    tiny_config,
    write_config,
)

pytestmark = pytest.mark.slow

N = 3
TARGET = "results/tiny/colorized/shipped/status.tsv"
RESULTS = "results/tiny/colorized/shipped"


def chunk_table(k: int) -> str:
    return f"{RESULTS}/chunks/status.chunk-{k}-of-{N}.tsv"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same folder colorized by one job (`one/`) and by N chunks (`chunked/`)."""
    base = tmp_path_factory.mktemp("chunks")
    (base / "photos").mkdir()  # the dataset source: must exist, is not used by these targets
    scans = base / "scans"
    save(scans / "old/scan1.png", colour_photo(53, 71, seed=7)[..., 0])
    save(scans / "scan2.jpg", colour_photo(40, 90, seed=8))
    save(scans / "a.gif", colour_photo(30, 40, seed=9))
    save(scans / "a.png", colour_photo(30, 40, seed=10))  # its output would replace a.gif's: fails
    (scans / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    for i in range(4):
        save(scans / f"p{i}.jpg", colour_photo(30 + i, 40, seed=20 + i))
    for name, chunks in (("one", 1), ("chunked", N)):
        work = copy_workflow(base / name)
        config = tiny_config(
            "../photos",
            run_models=[],
            shipped_model=True,
            colorize={"input_dir": "../scans", "chunks": chunks},
        )
        config["runtime"]["colorize_batch_size"] = 2
        write_config(work, config)
        snakemake(work, TARGET)
    return base


def images(work) -> dict[str, bytes]:
    root = work / RESULTS / "images"
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def clone(runs, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(runs, dst, symlinks=True)
    return dst, dst / "chunked"


def test_chunks_write_the_bytes_and_the_status_table_of_one_job(runs):
    one, chunked = runs / "one", runs / "chunked"
    assert images(chunked) == images(one)
    assert sorted(images(one)) == [
        "a.png",
        "old/scan1.png",
        "p0.jpg",
        "p1.jpg",
        "p2.jpg",
        "p3.jpg",
        "scan2.jpg",
    ]
    assert (chunked / TARGET).read_bytes() == (one / TARGET).read_bytes()
    assert len(read_tsv(chunked / TARGET)) == 9
    assert sum(len(read_tsv(chunked / chunk_table(k))) for k in range(1, N + 1)) == 9
    assert planned_jobs(chunked, TARGET) == {}


def test_a_lost_chunk_reruns_alone_and_redoes_only_its_missing_photo(runs, tmp_path):
    _, work = clone(runs, tmp_path)
    k = chunk_of("scan2.jpg", N)
    before = images(work)
    # as a chunk's job killed before its last photo leaves the run: no table for that chunk, no
    # gathered table (the gather never ran), one image missing; the chunk's journal holds the rest
    for path in (chunk_table(k), TARGET, f"{RESULTS}/images/scan2.jpg"):
        (work / path).unlink()
    assert planned_outputs(work, "colorize_folder", TARGET) == [chunk_table(k)]
    snakemake(work, TARGET)
    n_ok = sum(r["status"] == "ok" for r in read_tsv(work / chunk_table(k)))
    log = (work / f"results/tiny/logs/colorize/shipped/chunk-{k}-of-{N}.log").read_text()
    assert f"resuming: {n_ok - 1} of " in log
    after = images(work)
    assert [
        name for name in before if after.get(name) != before[name]
    ] == [] and after.keys() == before.keys()
    assert (work / TARGET).read_bytes() == (runs / "one" / TARGET).read_bytes()


def test_adding_and_removing_photos_reruns_only_their_chunks(runs, tmp_path):
    run, work = clone(runs, tmp_path)
    gone = "p1.jpg"
    new = next(f"new{i}.jpg" for i in range(100) if chunk_of(f"new{i}.jpg", N) != chunk_of(gone, N))
    save(run / "scans" / new, colour_photo(35, 45, seed=99))
    (run / "scans" / gone).unlink()
    changed = sorted({chunk_of(new, N), chunk_of(gone, N)})
    assert planned_outputs(work, "colorize_folder", TARGET) == [chunk_table(k) for k in changed]
    untouched = [k for k in range(1, N + 1) if k not in changed]
    stamps = {k: (work / chunk_table(k)).stat().st_mtime_ns for k in untouched}
    snakemake(work, TARGET)
    assert {k: (work / chunk_table(k)).stat().st_mtime_ns for k in untouched} == stamps
    assert set(images(work)) == set(images(runs / "one")) - {gone} | {new}
    listed = [r["input"].removeprefix("../scans/") for r in read_tsv(work / TARGET)]
    assert new in listed and gone not in listed and listed == sorted(listed)
    assert planned_jobs(work, TARGET) == {}
