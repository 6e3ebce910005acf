"""colorize.manifest: walking a source folder (links, odd names), scan rows, merging shard statuses, the summary."""

from __future__ import annotations

import os

from PIL import Image

from colorize.manifest import (
    SCAN_COLUMNS,
    merge,
    reason_category,
    scan,
    shard_rows,
    summarize,
    walk,
)
from colorize.preprocess import PreprocessConfig, build_shard
from colorize.shards import read_shard
from colorize.tsv import read_tsv, write_tsv
from helpers import ODD_NAMES, make_bad_images, mkdirs, upright_photo


def test_scan_shard_merge_summary(photo_dir, tmp_path):
    shards = {"train": 2, "val": 1, "test": 1}
    rows = scan(
        photo_dir,
        val_fraction=0.2,
        test_fraction=0.2,
        shards=shards,
        max_pixels=50_000_000,
        min_side=16,
        progress=False,
    )
    by = {r["relpath"]: r for r in rows}
    assert len(rows) == len(
        {p for p in photo_dir.rglob("*") if p.is_file()}
    )  # every file has a row
    assert by["zz_copy_of_good_01.jpg"]["status"] == "duplicate (same sha256 as good_01.jpg)"
    assert by["bad/bomb.png"]["status"].startswith("too many pixels")
    assert by["bad/readme.txt"]["status"].startswith("not an image file")
    assert by["good_01.jpg"]["sha256"] and int(by["good_01.jpg"]["width"]) == 128
    write_tsv(rows, tmp_path / "scan.tsv")
    rows = read_tsv(tmp_path / "scan.tsv")
    cfg = PreprocessConfig(image_size=32, max_pixels=50_000_000, min_side=16)
    status_files, total_ok = [], 0
    for split, n in shards.items():
        for i in range(n):
            part = shard_rows(rows, split, f"{i:03d}")
            h5, tsv = tmp_path / f"{split}-{i:03d}.h5", tmp_path / f"{split}-{i:03d}.tsv"
            counts = build_shard(
                part, [photo_dir / r["relpath"] for r in part], h5, tsv, split, cfg, progress=False
            )
            assert read_shard(h5).relpath == [
                r["relpath"] for r in read_tsv(tsv) if r["status"] == "ok"
            ]
            total_ok += counts["ok"]
            status_files.append(tsv)
    final = merge(rows, status_files)
    good = [r["relpath"] for r in final if r["status"] == "ok"]
    # every good image (plain and odd encodings) reached a shard; every bad one has its reason
    assert sorted(good) == sorted(
        [
            f"{'sub/' if i % 3 == 0 else ''}good_{i:02d}{'.jpg' if i % 2 else '.png'}"
            for i in range(6)
        ]
        + [
            f"odd/{n}"
            for n in ["rgba.png", "palette.png", "cmyk.jpg", "deep16.png", "anim.gif", "pages.tif"]
        ]
    )
    assert total_ok == len(good)
    expected_bad = make_bad_images(tmp_path / "expected")  # the same generator: name -> category
    fin = {r["relpath"]: r for r in final}
    for name, category in expected_bad.items():
        assert reason_category(fin[f"bad/{name}"]["status"]).startswith(category), fin[
            f"bad/{name}"
        ]
    summary = {(s["kind"], s["name"]): s["count"] for s in summarize(final)}
    assert summary[("total", "files")] == len(final)
    assert sum(summary[("split", s)] for s in ("train", "val", "test")) == len(good)
    assert summary[("excluded", "grayscale")] == 2 and summary[("excluded", "duplicate")] == 1


def test_include_patterns_select_subfolders(tmp_path):
    from colorize.manifest import list_files

    for rel in ["a/train/x.jpg", "a/test/y.jpg", "b/train/z.png", "top.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert list_files(tmp_path) == ["a/test/y.jpg", "a/train/x.jpg", "b/train/z.png", "top.png"]
    assert list_files(tmp_path, ["a/train/**", "b/train/**"]) == ["a/train/x.jpg", "b/train/z.png"]
    assert list_files(tmp_path, ["*/train/*.png"]) == ["b/train/z.png"]


def test_scan_rows_name_every_file_exactly(tmp_path):
    root = tmp_path / "photos"
    for i, name in enumerate(ODD_NAMES):
        Image.fromarray(upright_photo(seed=i)).save(
            root / name if root.exists() else mkdirs(root) / name
        )
    rows = scan(
        root,
        val_fraction=0.2,
        test_fraction=0.2,
        shards={"train": 2, "val": 1, "test": 1},
        min_side=8,
        progress=False,
    )
    write_tsv(rows, tmp_path / "scan.tsv", SCAN_COLUMNS)
    back = read_tsv(tmp_path / "scan.tsv")
    assert sorted(r["relpath"] for r in back) == sorted(ODD_NAMES)
    assert all(r["status"] == "ok" and (root / r["relpath"]).is_file() for r in back)


def test_links_that_leave_the_source_are_refused_and_recorded(tmp_path):
    root = mkdirs(tmp_path / "photos")
    outside = mkdirs(tmp_path / "elsewhere")
    Image.fromarray(upright_photo()).save(root / "a.jpg")
    Image.fromarray(upright_photo(seed=3)).save(outside / "b.jpg")
    mkdirs(root / "sub")
    os.symlink("/etc/passwd", root / "passwd.jpg")
    os.symlink(outside / "b.jpg", root / "b_link.jpg")
    os.symlink(outside, root / "outside_dir")
    os.symlink("../a.jpg", root / "sub" / "a_again.jpg")  # stays inside: followed
    os.symlink("missing.jpg", root / "broken.jpg")
    os.symlink("..", root / "sub" / "up")  # a loop
    os.mkfifo(root / "pipe.jpg")  # reading it would hang the scan
    listing = walk(root)
    assert listing.files == ["a.jpg", "sub/a_again.jpg"]
    refused = listing.refused
    assert set(refused) == {
        "passwd.jpg",
        "b_link.jpg",
        "outside_dir",
        "broken.jpg",
        "sub/up",
        "pipe.jpg",
    }
    for name in ("passwd.jpg", "b_link.jpg", "outside_dir"):
        assert refused[name].startswith("symlink leaves the source folder")
        assert "dataset.follow_external_links" in refused[name]
    assert refused["broken.jpg"].startswith("broken symlink")
    assert refused["sub/up"].startswith("symlink loop")
    assert refused["pipe.jpg"].startswith("not a regular file")
    rows = scan(
        root,
        val_fraction=0.2,
        test_fraction=0.2,
        shards={"train": 1, "val": 1, "test": 1},
        min_side=8,
        progress=False,
    )
    assert len(rows) == 8 and "passwd" not in str(
        [r["sha256"] for r in rows if r["relpath"] == "passwd.jpg"]
    )
    assert [r["sha256"] for r in rows if r["relpath"] == "passwd.jpg"] == [""]  # never read
    allowed = walk(root, follow_external_links=True)
    assert {"passwd.jpg", "b_link.jpg", "outside_dir/b.jpg"} <= set(allowed.files)


def test_folder_stamp_changes_when_a_file_is_added_removed_or_touched_not_when_copied(tmp_path):
    import shutil

    from colorize.manifest import folder_stamp

    root = tmp_path / "photos"
    for rel in ["a.jpg", "sub/b.jpg", "other/c.jpg"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    stamp = folder_stamp(root)
    assert folder_stamp(root) == stamp and len(stamp) == 64
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # times kept: a moved folder is the same source
    assert folder_stamp(copy) == stamp
    st = os.stat(root / "a.jpg")
    os.utime(root / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert folder_stamp(root) != stamp  # touched (or edited, kept its size): changed
    os.utime(root / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert folder_stamp(root) == stamp
    (root / "sub/new.jpg").write_bytes(b"new")
    assert folder_stamp(root) != stamp
    (root / "sub/new.jpg").unlink()
    assert folder_stamp(root) == stamp
    os.symlink("missing.jpg", root / "broken.jpg")  # refused entries count: the manifest lists them
    assert folder_stamp(root) != stamp
    (root / "broken.jpg").unlink()
    only_sub = folder_stamp(root, ["sub/**"])
    (root / "other/d.jpg").write_bytes(b"d")  # outside dataset.include: not part of the source
    assert folder_stamp(root, ["sub/**"]) == only_sub and folder_stamp(root) != stamp


def test_shard_rows_and_digests_read_from_the_scan_table(tmp_path):
    from colorize import manifest
    from colorize.manifest import EMPTY_SHARD, read_shard_rows, shard_digest

    root = tmp_path / "photos"
    for i, name in enumerate(ODD_NAMES):  # tabs, newlines, backslashes in names
        Image.fromarray(upright_photo(seed=i)).save(
            root / name if root.exists() else mkdirs(root) / name
        )
    shards = {"train": 3, "val": 1, "test": 1}
    rows = scan(
        root, val_fraction=0.2, test_fraction=0.2, shards=shards, min_side=8, progress=False
    )
    rows.append(dict(rows[0], relpath="excluded.jpg", split="", shard="", status="too small (2x2)"))
    tsv = write_tsv(rows, tmp_path / "scan.tsv", SCAN_COLUMNS)
    table = read_tsv(tsv)
    keys = [(split, f"{i:03d}") for split, n in shards.items() for i in range(n)]
    assert sum(len(read_shard_rows(tsv, *key)) for key in keys) == len(ODD_NAMES)
    for key in keys:
        assert read_shard_rows(tsv, *key) == shard_rows(table, *key)
    misses = manifest._shard_digests.cache_info().misses
    before = {key: shard_digest(tsv, *key) for key in keys}
    assert manifest._shard_digests.cache_info().misses == misses + 1  # parsed once for every shard
    assert shard_digest(tsv, "train", "099") == EMPTY_SHARD
    filled = [d for d in before.values() if d != EMPTY_SHARD]
    assert filled and len(set(filled)) == len(filled)
    edited = next(r for r in rows if r["status"] == "ok")
    edited["sha256"] = "f" * 64  # its content changed: its shard's digest, no other
    write_tsv(rows, tsv, SCAN_COLUMNS)
    after = {key: shard_digest(tsv, *key) for key in keys}
    changed = [key for key in keys if after[key] != before[key]]
    assert changed == [(edited["split"], edited["shard"])]
    rows.remove(edited)  # removed from the set: its shard changes again
    write_tsv(rows, tsv, SCAN_COLUMNS)
    assert [key for key in keys if shard_digest(tsv, *key) != after[key]] == changed


def test_scan_of_several_sources_is_one_dataset(tmp_path):
    """dataset.source as {name: folder} (issue 20): paths prefixed with the source's name,
    duplicates found across sources, the split made per source, and the files found again."""
    from colorize.manifest import source_of, source_path

    a, b = mkdirs(tmp_path / "one"), mkdirs(tmp_path / "elsewhere/two")
    for i in range(6):
        Image.fromarray(upright_photo(seed=i)).save(a / f"p{i}.png")
        Image.fromarray(upright_photo(seed=10 + i)).save(b / f"q{i}.png")
    (b / "copy_of_p0.png").write_bytes(
        (a / "p0.png").read_bytes()
    )  # the same photo in the other source
    sources = {"one": a, "two": b}
    rows = scan(
        sources,
        val_fraction=0.2,
        test_fraction=0.2,
        shards={"train": 1, "val": 1, "test": 1},
        progress=False,
    )
    by_path = {r["relpath"]: r for r in rows}
    assert sorted(by_path) == sorted(
        [f"one/p{i}.png" for i in range(6)]
        + [f"two/q{i}.png" for i in range(6)]
        + ["two/copy_of_p0.png"]
    )
    assert by_path["two/copy_of_p0.png"]["status"] == "duplicate (same sha256 as one/p0.png)"
    for name in sources:
        mine = [r["split"] for r in rows if source_of(r["relpath"]) == name and r["status"] == "ok"]
        assert sorted(mine) == [
            "test",
            "train",
            "train",
            "train",
            "train",
            "val",
        ]  # round(6 * 0.2) = 1 each
    assert source_path(sources, "two/q3.png") == b / "q3.png"
    assert source_path(a, "p1.png") == a / "p1.png"  # one folder: as before
    assert source_of("two/sub/q.png") == "two" and source_of("top.png") == "."
