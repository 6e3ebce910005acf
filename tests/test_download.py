"""colorize.download: fetch and acquire against a real HTTP server on 127.0.0.1 (tests/http_server.py)."""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import random
import socket
import tarfile
import zipfile

import pytest

from colorize.archive import UnsafeArchiveError
from colorize.download import (
    AcquiredFile,
    ChecksumError,
    DownloadError,
    acquire,
    fetch,
    url_basename,
)

FAST = {"backoff": 0.01, "timeout": 5, "progress": False}  # tiny waits between retries
PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
JPEG = b"\xff\xd8\xff\xe0" + random.Random(1).randbytes(2000)
PNG = b"\x89PNG\r\n\x1a\n" + random.Random(2).randbytes(2000)


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- fetch ----------------------------------------------------------------------------------------


def test_fetch_downloads_and_checks_sha256(http_server, tmp_path):
    url = http_server.add_file("data/blob.bin", PAYLOAD)
    dest = tmp_path / "out" / "blob.bin"
    assert (
        fetch(url, dest, PAYLOAD_SHA.upper(), progress=True) == dest
    )  # the progress bar goes to stderr
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin"]  # no .part left
    assert http_server.count("/data/blob.bin") == 1


def test_checksum_mismatch_is_refused_and_nothing_is_left(http_server, tmp_path):
    url = http_server.add_file("blob.bin", PAYLOAD)
    wrong = "0" * 64
    dest = tmp_path / "blob.bin"
    with pytest.raises(ChecksumError) as excinfo:
        fetch(url, dest, wrong, **FAST)
    message = str(excinfo.value)
    assert url in message and wrong in message and PAYLOAD_SHA in message
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_is_resumed_with_range(http_server, tmp_path, caplog):
    url = http_server.add_file("blob.bin", PAYLOAD)
    http_server.drop("/blob.bin", after_bytes=100_000)
    with caplog.at_level(logging.INFO, logger="colorize.download"):
        dest = fetch(url, tmp_path / "blob.bin", PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    first, second = http_server.requests_for("/blob.bin")
    assert "Range" not in first.headers
    assert second.headers["Range"] == "bytes=100000-"
    assert second.headers["If-Range"].startswith('"')  # the ETag of the first answer
    assert "resuming" in caplog.text


def test_restarts_when_the_server_ignores_range(http_server, tmp_path):
    url = http_server.add_file("blob.bin", PAYLOAD)
    http_server.drop("/blob.bin", after_bytes=100_000)
    http_server.ignore_range("/blob.bin")
    dest = fetch(url, tmp_path / "blob.bin", PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD  # not the first 100 kB twice
    assert [r.headers.get("Range") for r in http_server.requests_for("/blob.bin")] == [
        None,
        "bytes=100000-",
    ]


def test_keeps_resuming_while_each_attempt_brings_bytes(http_server, tmp_path):
    url = http_server.add_file("blob.bin", PAYLOAD)
    http_server.drop("/blob.bin", after_bytes=50_000, times=4)  # 4 drops, more than retries=2
    dest = fetch(url, tmp_path / "blob.bin", PAYLOAD_SHA, retries=2, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.count("/blob.bin") == 5


@pytest.mark.parametrize("status", [500, 503, 429])
def test_transient_errors_are_retried(http_server, tmp_path, caplog, status):
    url = http_server.add_file("blob.bin", PAYLOAD)
    http_server.fail("/blob.bin", status, times=2)
    dest = fetch(url, tmp_path / "blob.bin", **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.count("/blob.bin") == 3
    assert caplog.text.count(f"HTTP {status}") == 2  # one warning per failed attempt


def test_gives_up_after_the_retries(http_server, tmp_path):
    url = http_server.add_file("blob.bin", PAYLOAD)
    http_server.fail("/blob.bin", 503, times=None)
    with pytest.raises(DownloadError, match=r"gave up after 3 attempts.*HTTP 503") as excinfo:
        fetch(url, tmp_path / "blob.bin", retries=2, **FAST)
    assert url in str(excinfo.value)
    assert http_server.count("/blob.bin") == 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", [404, 403])
def test_client_errors_fail_at_once(http_server, tmp_path, status):
    if status == 404:
        url = http_server.url("missing.bin")
    else:
        url = http_server.add_file("secret.bin", PAYLOAD)
        http_server.fail("/secret.bin", status, times=None)
    with pytest.raises(DownloadError, match=f"HTTP {status}") as excinfo:
        fetch(url, tmp_path / "x.bin", **FAST)
    assert url in str(excinfo.value) and excinfo.value.status == status
    assert len(http_server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_timeout_is_retried(http_server, tmp_path):
    url = http_server.add_file("blob.bin", PAYLOAD)
    http_server.stall("/blob.bin", seconds=1.0)
    dest = fetch(url, tmp_path / "blob.bin", PAYLOAD_SHA, timeout=0.2, backoff=0.01, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.count("/blob.bin") == 2


def test_connection_refused_is_retried_then_reported(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/blob.bin"
    with pytest.raises(DownloadError, match=r"gave up after 2 attempts.*refused"):
        fetch(url, tmp_path / "blob.bin", retries=1, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="http"):
        fetch("file:///etc/passwd", tmp_path / "x")
    with pytest.raises(ValueError, match="64 hexadecimal"):
        fetch("http://127.0.0.1:1/x", tmp_path / "x", sha256="abc")
    with pytest.raises(ValueError, match="http"):
        acquire("ftp://example.org/x.zip", tmp_path / "raw")


# -- acquire ------------------------------------------------------------------------------------

IMAGES = {"photos/a.jpg": JPEG, "photos/sub/b.png": PNG}


@pytest.mark.parametrize("name, build", [("data.zip", zip_bytes), ("data.tar.gz", tar_gz_bytes)])
def test_acquire_archive(http_server, tmp_path, name, build):
    data = build(IMAGES)
    url = http_server.add_file(f"dl/{name}", data)
    raw = tmp_path / "raw"
    records = acquire(url, raw, sha256=sha(data), **FAST)
    assert records == [AcquiredFile(url, relpath) for relpath in IMAGES]
    assert all((raw / relpath).read_bytes() == content for relpath, content in IMAGES.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # the downloaded archive is gone


def test_acquire_refuses_an_unsafe_archive(http_server, tmp_path):
    url = http_server.add_file("slip.zip", zip_bytes({"ok.jpg": JPEG, "../evil.jpg": JPEG}))
    raw = tmp_path / "raw"
    with pytest.raises(UnsafeArchiveError, match="evil"):
        acquire(url, raw, **FAST)
    assert list(raw.iterdir()) == []
    assert not (tmp_path / "evil.jpg").exists()


def test_acquire_archive_over_the_cap(http_server, tmp_path):
    url = http_server.add_file("bomb.zip", zip_bytes({"zeros.bin": bytes(2_000_000)}))
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        acquire(url, tmp_path / "raw", max_total_bytes=1_000_000, **FAST)
    assert list((tmp_path / "raw").iterdir()) == []


def test_acquire_single_image(http_server, tmp_path):
    url = http_server.add_file("img/cat%20one.jpg", JPEG)  # served at /img/cat%2520one.jpg
    records = acquire(url, tmp_path / "raw", sha256=sha(JPEG), **FAST)
    assert records == [AcquiredFile(url, "cat%20one.jpg")]
    assert (tmp_path / "raw" / "cat%20one.jpg").read_bytes() == JPEG


def test_acquire_url_list(http_server, tmp_path, caplog):
    base = http_server.url("")
    urls = {
        "a": http_server.add_file("set1/x.jpg", JPEG),
        "b": http_server.add_file("set2/x.jpg", PNG),  # same basename as a
        "c": http_server.add_file("set2/c.png", PNG),
        "checked": http_server.add_file("set2/d.png", PNG),
        "bad sum": http_server.add_file("set2/e.png", PNG),
    }
    listing = "\n".join(
        [
            "# photos for the test",
            urls["a"],
            "",
            urls["b"],
            "   set2/c.png   ",  # relative to the list's URL
            base + "missing.jpg",
            f"{urls['checked']}  {sha(PNG)}",
            f"{urls['bad sum']}\t{'f' * 64}",
            "one two three",
            urls["a"],  # listed again: fetched once
        ]
    )
    list_url = http_server.add_file("photos.txt", listing.encode())
    raw = tmp_path / "raw"
    records = acquire(list_url, raw, sha256=sha(listing.encode()), **FAST)

    by_url = {r.url: r for r in records}
    assert len(records) == 7
    name_a, name_b = by_url[urls["a"]].relpath, by_url[urls["b"]].relpath
    assert name_a != name_b and name_a.endswith("-x.jpg") and name_b.endswith("-x.jpg")
    assert (raw / name_a).read_bytes() == JPEG and (raw / name_b).read_bytes() == PNG
    assert by_url[base + "set2/c.png"] == AcquiredFile(base + "set2/c.png", "c.png")
    assert by_url[urls["checked"]].ok and (raw / "d.png").exists()
    missing = by_url[base + "missing.jpg"]
    assert not missing.ok and "HTTP 404" in missing.error and missing.status.startswith("error: ")
    assert missing.relpath == "missing.jpg" and not (raw / "missing.jpg").exists()
    assert "checksum mismatch" in by_url[urls["bad sum"]].error and not (raw / "e.png").exists()
    assert "expected 'URL [SHA256]'" in by_url["one two three"].error
    assert sorted(p.name for p in raw.iterdir()) == sorted([name_a, name_b, "c.png", "d.png"])
    assert http_server.count("/set1/x.jpg") == 1 and http_server.count("/missing.jpg") == 1
    assert "missing.jpg" in caplog.text  # each failure is logged
    assert http_server.count("/photos.txt") == 1
    assert not (tmp_path / "downloads").exists()  # the list itself is not kept


def test_acquire_url_list_where_everything_fails(http_server, tmp_path):
    url = http_server.add_file("photos.lst", http_server.url("gone.jpg").encode())
    with pytest.raises(DownloadError, match="none of the 1 files"):
        acquire(url, tmp_path / "raw", **FAST)
    empty = http_server.add_file("empty.txt", b"# nothing yet\n\n")
    with pytest.raises(DownloadError, match="lists no URLs"):
        acquire(empty, tmp_path / "raw", **FAST)


def test_acquire_recognises_content_without_a_suffix(http_server, tmp_path):
    raw = tmp_path / "raw"
    zip_url = http_server.add_file("get", zip_bytes({"a.jpg": JPEG}))
    image_url = http_server.add_file("image", PNG, content_type="application/octet-stream")
    list_url = http_server.add_file(
        "urls", http_server.url("p.png").encode(), content_type="text/plain; charset=utf-8"
    )
    http_server.add_file("p.png", PNG)
    assert acquire(zip_url + "?id=7", raw, **FAST) == [AcquiredFile(zip_url + "?id=7", "a.jpg")]
    assert acquire(image_url, raw, **FAST) == [AcquiredFile(image_url, "image.png")]
    assert acquire(list_url, raw, **FAST) == [AcquiredFile(http_server.url("p.png"), "p.png")]
    assert sorted(p.name for p in raw.iterdir()) == ["a.jpg", "image.png", "p.png"]


def test_errors_survive_pickling():
    """Process pools send exceptions back pickled: the fields must come through."""
    err = pickle.loads(pickle.dumps(DownloadError("boom", url="http://x/y", status=503)))
    assert (str(err), err.url, err.status) == ("boom", "http://x/y", 503)
    unsafe = pickle.loads(pickle.dumps(UnsafeArchiveError("a.zip", "../x", "'..' in the path")))
    assert (unsafe.member, str(unsafe)) == (
        "../x",
        "refusing to extract a.zip: member '../x': '..' in the path",
    )


def test_url_basename():
    assert url_basename("https://h/a/b/photo.jpg?x=1#y") == "photo.jpg"
    assert url_basename("https://h/a/my%20photo.jpg") == "my photo.jpg"
    assert url_basename("https://h/a/..%2F..%2Fetc%2Fpasswd") == "_.._etc_passwd"
    assert url_basename("https://h/").startswith("download-")
    assert len(url_basename("https://h/" + "x" * 300 + ".jpg")) < 200
