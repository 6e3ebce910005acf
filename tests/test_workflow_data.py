"""End-to-end: the real Snakemake workflow's data stages on a tiny generated folder."""

from __future__ import annotations

import h5py
import pytest

from colorize.tsv import read_tsv
from workflow_utils import planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow


def test_data_stages_end_to_end(photo_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, tiny_config(photo_dir))
    snakemake(work, "results/tiny/summary.tsv")
    manifest = read_tsv(work / "results/tiny/manifest.tsv")
    files = sorted(p.relative_to(photo_dir).as_posix() for p in photo_dir.rglob("*") if p.is_file())
    assert sorted(r["relpath"] for r in manifest) == files  # one row for EVERY input file
    ok = {r["relpath"] for r in manifest if r["status"] == "ok"}
    assert len(ok) == 12  # 6 plain + 6 odd encodings; bad files and the duplicate are out
    in_shards = set()
    for h5 in (work / "results/tiny/shards").glob("*.h5"):
        with h5py.File(h5) as f:
            assert f["L"].shape[1:] == (32, 32) and f["ab"].shape[1:] == (2, 32, 32)
            assert f["L"].chunks == (1, 32, 32)
            in_shards |= {s.decode() for s in f["relpath"][...]}
    assert in_shards == ok
    assert planned_jobs(work, "results/tiny/summary.tsv") == {}


def test_a_photo_reruns_its_shard_by_content_and_no_other(photo_dir, tmp_path):
    """A shard job's input is the scan table, not its photos; its rerun trigger is a digest of
    its members' paths and sha256 (a param). Touching a photo reruns the scan, not a shard;
    editing its content reruns exactly the shard that holds it."""
    import os

    from conftest import colour_photo, save

    work = tmp_path / "work"
    work.mkdir()
    write_config(work, tiny_config(photo_dir))
    target = "results/tiny/summary.tsv"
    snakemake(work, target)
    shards = work / "results/tiny/shards"
    built = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.h5")}
    photo = "good_02.png"
    row = next(r for r in read_tsv(work / "results/tiny/scan.tsv") if r["relpath"] == photo)
    st = os.stat(photo_dir / photo)
    os.utime(photo_dir / photo, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert planned_jobs(work, target) == {"scan": 1, "manifest": 1}
    snakemake(work, target)
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.h5")} == built
    save(photo_dir / photo, colour_photo(48, 64, seed=123))  # new content, same name
    assert planned_jobs(work, target) == {"scan": 1, "manifest": 1}  # shards: known after the scan
    run = snakemake(work, target)
    assert (run.stdout + run.stderr).count("rule shard:") == 1
    rebuilt = [p.name for p in shards.glob("*.h5") if p.stat().st_mtime_ns != built[p.name]]
    assert rebuilt == [f"{row['split']}-{row['shard']}.h5"]
    new = next(r for r in read_tsv(work / "results/tiny/scan.tsv") if r["relpath"] == photo)
    with h5py.File(shards / rebuilt[0]) as f:
        sha = dict(
            zip((s.decode() for s in f["relpath"][...]), (s.decode() for s in f["sha256"][...]))
        )
    assert sha[photo] == new["sha256"] != row["sha256"]
    assert planned_jobs(work, target) == {}


def test_bad_config_value_fails_before_any_job_naming_the_key(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, tiny_config("builtin", resize_policy="squash"))
    proc = snakemake(work, "--dry-run", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "resize_policy" in out and "squash" in out
    write_config(work, tiny_config(tmp_path / "no-such-folder"))
    proc = snakemake(work, "--dry-run", check=False)
    assert proc.returncode != 0 and "dataset.source" in proc.stdout + proc.stderr


def test_url_archive_source_through_the_workflow(photo_dir, tmp_path, http_server):
    """dataset.source = an http URL to a .tar.gz (served on 127.0.0.1), with its sha256;
    the connection drops once mid-body and the download resumes."""
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(photo_dir, arcname="photos")
    data = buf.getvalue()
    url = http_server.add_file("sets/photos.tar.gz", data)
    http_server.drop("/sets/photos.tar.gz", after_bytes=len(data) // 3)
    work = tmp_path / "work"
    work.mkdir()
    cfg = tiny_config(url)
    cfg["dataset"]["sha256"] = hashlib.sha256(data).hexdigest()
    write_config(work, cfg)
    snakemake(work, "results/tiny/summary.tsv")
    assert http_server.requests_for("/sets/photos.tar.gz")[-1].headers.get("Range")  # resumed
    manifest = read_tsv(work / "results/tiny/manifest.tsv")
    assert len([r for r in manifest if r["status"] == "ok"]) == 12
    assert all(r["relpath"].startswith("photos/") for r in manifest)

    # a wrong checksum stops the run with a message naming expected and actual
    work2 = tmp_path / "work2"
    work2.mkdir()
    cfg["dataset"]["sha256"] = "0" * 64
    write_config(work2, cfg)
    proc = snakemake(work2, "results/tiny/summary.tsv", check=False)
    assert proc.returncode != 0
    log = (work2 / "results/tiny/logs/fetch.log").read_text()
    assert "0" * 64 in log and hashlib.sha256(data).hexdigest() in log


def test_real_world_names_and_links_through_the_data_stages(tmp_path):
    """White space runs, tabs, newlines, non-ASCII and non-UTF-8 names, and links out of the
    folder: the data stage runs, every entry has a manifest row with its exact name, good
    photos reach the shards, and nothing outside the folder is read."""
    import os

    from conftest import colour_photo, make_good_images, save

    root = tmp_path / "photos"
    make_good_images(root, n=4)
    odd = [
        "two  spaces.jpg",
        " leading.jpg",
        "trailing .jpg",
        "tab\there.jpg",
        "new\nline.jpg",
        "ünï 写真.png",
    ]
    for i, name in enumerate(odd):
        save(root / name, colour_photo(64, 80, seed=50 + i))
    save(root / os.fsdecode(b"caf\xe9.jpg"), colour_photo(64, 80, seed=70))
    os.symlink("/etc/passwd", root / "passwd.jpg")
    os.symlink("good_01.jpg", root / "inside_link.jpg")
    os.symlink("nowhere.jpg", root / "broken.jpg")
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, tiny_config(root))
    snakemake(work, "results/tiny/summary.tsv")
    manifest = {r["relpath"]: r["status"] for r in read_tsv(work / "results/tiny/manifest.tsv")}
    assert len(manifest) == 4 + len(odd) + 4
    for name in odd:
        assert manifest[name] == "ok", name
    assert manifest["caf\\xe9.jpg"].startswith("file name is not valid UTF-8")
    assert manifest["passwd.jpg"].startswith("symlink leaves the source folder")
    assert manifest["broken.jpg"].startswith("broken symlink")
    assert manifest["inside_link.jpg"].startswith("duplicate")  # followed: it stays inside
    in_shards = set()
    for h5 in (work / "results/tiny/shards").glob("*.h5"):
        with h5py.File(h5) as f:
            in_shards |= {s.decode() for s in f["relpath"][...]}
    assert in_shards == {n for n, s in manifest.items() if s == "ok"}
    assert planned_jobs(work, "results/tiny/summary.tsv") == {}


@pytest.mark.parametrize(
    "override, key",
    [
        ({"dataset": {"name": "..", "source": "builtin"}}, "dataset.name"),
        ({"dataset": {"name": ".hidden", "source": "builtin"}}, "dataset.name"),
        ({"dataset": {"name": "a/b", "source": "builtin"}}, "dataset.name"),
        (
            {"image_size": 32, "models": {"m": {"arch": "unet", "crop_size": 64}}},
            "models.m.crop_size",
        ),
        ({"models": {"..": {"arch": "unet"}}}, "models"),
    ],
)
def test_config_values_that_would_fail_later_fail_before_any_job(tmp_path, override, key):
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, tiny_config("builtin", **override))
    proc = snakemake(work, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"config key {key}" in out, out[-3000:]
    assert not (work / "results").exists() and not (tmp_path / "results").exists()
