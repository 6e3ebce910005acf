"""Every kind of link hazard (a file loop, a folder loop, a broken link, a link leaving the
folder, a fifo) in every folder the project reads: the data stage's source, an `eval_sets:`
folder, `colorize predict`'s input and the workflow's `colorize.input_dir`. Each hazard gets its
row with its reason, every valid photo gets through, and nothing outside the folder is read.

One real Snakemake run covers the three workflow folders (the shipped model, no training), one
real `colorize predict` the command; a fifo that anything opened would hang the run (a timeout).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from colorize.tsv import read_tsv
from helpers import colour_photo, make_good_images, save
from workflow_utils import snakemake, tiny_config, write_config

RESULTS = "results/tiny"
HAZARDS = {  # relative name -> the start of the reason its row must give
    "l1.jpg": "symlink loop",
    "l2.jpg": "symlink loop",
    "sub/up": "symlink loop",
    "broken.jpg": "broken symlink",
    "outside.jpg": "symlink leaves the",
    "pipe.jpg": "not a regular file",
}
SECRET = "secret.jpg"  # the photo the outside link points to: never read


def add_hazards(folder: Path, outside: Path) -> None:
    """The five hazards of ``HAZARDS`` in ``folder`` (which already holds photos and sub/)."""
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "l1.jpg").symlink_to("l2.jpg")
    (folder / "l2.jpg").symlink_to("l1.jpg")
    (folder / "sub/up").symlink_to("..")
    (folder / "broken.jpg").symlink_to("nowhere.jpg")
    (folder / "outside.jpg").symlink_to(outside / SECRET)
    os.mkfifo(folder / "pipe.jpg")


NOT_UTF8 = os.fsdecode(b"caf\xe9.jpg")  # a valid photo whose name is not UTF-8


def hostile_folder(folder: Path, outside: Path, n: int, not_utf8: bool = False) -> list[str]:
    """``n`` valid photos (some in sub/) and every hazard; returns the photos' names (as the
    status tables show them)."""
    photos = make_good_images(folder, n=n, size=(40, 48))
    if not_utf8:  # colorized by both colorize paths; the data stage refuses it (its own test)
        save(folder / NOT_UTF8, colour_photo(40, 48, seed=98), quality=95)
        photos.append("caf\\xe9.jpg")
    add_hazards(folder, outside)
    return photos


def assert_rows(rows: dict[str, str], photos: list[str], ok: str | None) -> None:
    """``rows``: relative name -> reason (or status ``ok``) of one path's table."""
    for rel, reason in HAZARDS.items():
        assert rel in rows, f"{rel}: no row in {sorted(rows)}"
        assert rows[rel].startswith(reason), (rel, rows[rel])
    if ok is not None:
        for rel in photos:
            assert rows.get(rel) == ok, (rel, rows.get(rel))
    assert not any(SECRET in rel for rel in rows)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("sweep")
    save(base / "outside" / SECRET, colour_photo(40, 48, seed=99))
    return base


def test_the_workflow_gives_every_hazard_its_row_and_every_photo_gets_through(base):
    outside = base / "outside"
    data = hostile_folder(base / "photos", outside, n=8)
    external = hostile_folder(base / "external", outside, n=3)
    scans = hostile_folder(base / "scans", outside, n=3, not_utf8=True)
    work = base / "work"
    work.mkdir()
    config = tiny_config(
        "../photos",
        run_models=[],
        shipped_model=True,
        eval_sets={"hostile": "../external"},
        colorize={"input_dir": "../scans"},
    )
    write_config(work, config)
    eval_dir = f"{RESULTS}/eval/shipped/external/hostile"
    targets = [
        f"{RESULTS}/manifest.tsv",
        f"{eval_dir}/excluded.tsv",
        f"{RESULTS}/colorized/shipped/status.tsv",
    ]
    snakemake(work, *targets, timeout=420)

    # the data stage: a manifest row for every entry, the photos in the shards, nothing else
    manifest = {r["relpath"]: r["status"] for r in read_tsv(work / RESULTS / "manifest.tsv")}
    assert_rows(manifest, data, ok="ok")
    in_shards = set()
    for h5 in (work / RESULTS / "shards").glob("*.h5"):
        with h5py.File(h5) as f:
            in_shards |= {s.decode() for s in f["relpath"][...]}
    assert in_shards == set(data)

    # eval_sets: the hazards listed as excluded, the photos evaluated
    excluded = {r["image"]: r["reason"] for r in read_tsv(work / eval_dir / "excluded.tsv")}
    assert_rows(excluded, external, ok=None)
    evaluated = {r["image"] for r in read_tsv(work / eval_dir / "per_image.tsv")}
    assert evaluated == set(external)

    # colorize.input_dir: a skipped row per hazard (naming the config key), the photos colorized
    status = read_tsv(work / RESULTS / "colorized/shipped/status.tsv")
    rows = {os.path.relpath(work / r["input"], base / "scans"): r for r in status}
    assert_rows({k: r["reason"] or r["status"] for k, r in rows.items()}, scans, ok="ok")
    assert {k for k, r in rows.items() if r["status"] == "skipped"} == set(HAZARDS)
    assert "colorize.follow_external_links" in rows["outside.jpg"]["reason"]
    images = work / RESULTS / "colorized/shipped/images"
    written = sorted(p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file())
    assert written == sorted(n.replace("\\xe9", "\udce9") for n in scans)


def test_colorize_predict_gives_every_hazard_its_row_and_reads_nothing_outside(base):
    folder = base / "predict_in"
    photos = hostile_folder(folder, base / "outside", n=3, not_utf8=True)
    out = base / "predict_out"
    env = dict(os.environ, COLORIZE_DEVICE="cpu", OMP_NUM_THREADS="1")
    colorize = str(Path(sys.executable).with_name("colorize"))
    cmd = [colorize, "predict", "-r", "--quiet", "-o", str(out), str(folder)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    rows = {os.path.relpath(x["input"], folder): x for x in read_tsv(out / "status.tsv")}
    assert_rows({k: x["reason"] or x["status"] for k, x in rows.items()}, photos, ok="ok")
    assert "--follow-links" in rows["outside.jpg"]["reason"]
    assert f"colorized {len(photos)} of {len(photos) + len(HAZARDS)} images" in r.stdout
    assert f"0 failed; {len(HAZARDS)} skipped" in r.stdout
    for rel in HAZARDS:
        assert f"skipped: {folder / rel}: " in r.stderr

    # --follow-links: the photo outside is colorized too; the other hazards stay refused
    r = subprocess.run(
        [*cmd, "--follow-links"], capture_output=True, text=True, env=env, timeout=180
    )
    assert r.returncode == 0, r.stderr
    rows = {os.path.relpath(x["input"], folder): x for x in read_tsv(out / "status.tsv")}
    assert rows["outside.jpg"]["status"] == "ok"
    assert (out / "outside.jpg").is_file()
    assert {k for k, x in rows.items() if x["status"] == "skipped"} == set(HAZARDS) - {
        "outside.jpg"
    }
