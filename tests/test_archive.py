"""colorize.archive: safe_extract takes ordinary archives out whole; dangerous ones are refused, leaving nothing."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from colorize.archive import (
    ArchiveError,
    UnsafeArchiveError,
    archive_format,
    human_bytes,
    safe_extract,
)
from helpers import MiB, zeros_zip

TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tgz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}


# -- building archives --------------------------------------------------------------------------


def make_zip(
    path: Path, files: dict[str, bytes], *, dirs=(), symlinks: dict[str, str] | None = None
) -> Path:
    """symlinks: name -> target, stored as Info-ZIP does (Unix mode bits S_IFLNK)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in dirs:
            zf.writestr(name, b"")
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def make_tar(path: Path, files: dict[str, bytes], *, dirs=(), specials=()) -> Path:
    """specials: TarInfo entries without data (links, devices, fifos), added after the files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = TAR_MODES[path.name.split(".", 1)[1]]
    with tarfile.open(path, mode) as tf:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in specials:
            tf.addfile(info)
    return path


def tar_special(name: str, type_: bytes, linkname: str = "") -> tarfile.TarInfo:
    """A tar member without data: a symlink, hard link, device or fifo."""
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    return info


def set_declared_size(path: Path, size: int) -> None:
    """Make the (single-member) zip's headers lie about the member's uncompressed size."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, size)  # central directory
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, size)  # local header
    path.write_bytes(bytes(data))


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def layout(tmp_path):
    """tmp/in/ holds archives, tmp/work/out is the target; tmp/work/ is where '../x' would land."""
    (tmp_path / "in").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path, tmp_path / "in", tmp_path / "work" / "out"


# -- ordinary archives ----------------------------------------------------------------------------

FILES = {
    "photos/a.jpg": b"\xff\xd8\xffA" * 100,
    "photos/sub/b.png": b"\x89PNG" * 50,
    "readme.txt": b"hi",
}


def test_zip_extracts_files_and_folders(layout):
    tmp, src, out = layout
    archive = make_zip(src / "data.zip", FILES, dirs=["photos/", "empty/"])
    paths = safe_extract(archive, out)
    assert paths == [out / name for name in FILES]
    for name, data in FILES.items():
        assert (out / name).read_bytes() == data
    assert (out / "empty").is_dir()
    assert tree(tmp / "work") == {
        "out",
        "out/photos",
        "out/photos/sub",
        "out/empty",
        *(f"out/{n}" for n in FILES),
    }


@pytest.mark.parametrize("suffix", list(TAR_MODES))
def test_tar_formats_extract(layout, suffix):
    tmp, src, out = layout
    archive = make_tar(src / f"data.{suffix}", FILES, dirs=["photos"])
    assert archive_format(archive) == "tar"
    paths = safe_extract(archive, out)
    assert paths == [out / name for name in FILES]
    assert all((out / name).read_bytes() == data for name, data in FILES.items())
    assert tree(tmp / "work") == {
        "out",
        "out/photos",
        "out/photos/sub",
        *(f"out/{n}" for n in FILES),
    }


def test_format_is_detected_from_content_without_suffix(layout):
    _, src, out = layout
    zipped = make_zip(src / "zipped.zip", {"a.txt": b"a"}).rename(src / "download-1")
    tarred = make_tar(src / "tarred.tar.gz", {"b.txt": b"b"}).rename(src / "download-2")
    assert safe_extract(zipped, out) == [out / "a.txt"]
    assert safe_extract(tarred, out) == [out / "b.txt"]


def test_extracts_into_a_folder_that_has_files(layout):
    _, src, out = layout
    (out / "photos").mkdir(parents=True)
    (out / "keep.txt").write_bytes(b"keep")
    (out / "photos" / "a.jpg").write_bytes(b"old")
    archive = make_zip(src / "data.zip", FILES)
    safe_extract(archive, out)
    assert (out / "keep.txt").read_bytes() == b"keep"
    assert (out / "photos" / "a.jpg").read_bytes() == FILES["photos/a.jpg"]  # replaced
    assert (out / "photos" / "sub" / "b.png").read_bytes() == FILES["photos/sub/b.png"]


def test_not_an_archive(layout):
    _, src, out = layout
    for name in ("fake.zip", "fake.tar.gz", "blob"):
        (src / name).write_bytes(b"<html>not found</html>")
        with pytest.raises(ArchiveError, match="not a"):
            safe_extract(src / name, out)
    assert not out.exists()


def test_corrupt_member_leaves_nothing(layout):
    tmp, src, out = layout
    archive = make_zip(src / "data.zip", {"a.txt": b"a" * 1000, "b.txt": b"b" * 1000})
    data = bytearray(archive.read_bytes())
    data[data.find(b"b.txt") + 5 + 2] ^= 0xFF  # flip a byte of b.txt's compressed data
    archive.write_bytes(bytes(data))
    before = tree(tmp)
    with pytest.raises(ArchiveError, match="b.txt"):
        safe_extract(archive, out)
    assert tree(tmp) == before


# -- refused archives -----------------------------------------------------------------------------


# case -> (archive, its bad files, its special members, the member refused, the reason). Each
# archive also holds an innocent ok.txt first: "nothing written" means it was not extracted either.
EVIL = {
    "zip ../": ("slip.zip", {"../evil.txt": b"x"}, {}, "../evil.txt", "'..' in the path"),
    "zip deep ../": (
        "deep.zip",
        {"a/../../evil.txt": b"x"},
        {},
        "a/../../evil.txt",
        "'..' in the path",
    ),
    "zip backslash ..": ("bs.zip", {"..\\evil.txt": b"x"}, {}, "..\\evil.txt", "'..' in the path"),
    "zip absolute": ("abs.zip", {"/tmp/evil.txt": b"x"}, {}, "/tmp/evil.txt", "absolute path"),
    "zip symlink": ("link.zip", {}, {"link": "/etc/passwd"}, "link", "symlink"),
    "tar ../": ("slip.tar", {"../evil.txt": b"x"}, [], "../evil.txt", "'..' in the path"),
    "tar absolute": ("abs.tar.gz", {"/tmp/evil.txt": b"x"}, [], "/tmp/evil.txt", "absolute path"),
    "tar symlink": ("sym.tar", {}, [tar_special("l", tarfile.SYMTYPE, "/etc")], "l", "symlink"),
    "tar symlink to ..": ("up.tar", {}, [tar_special("d", tarfile.SYMTYPE, "..")], "d", "symlink"),
    "tar hard link": (
        "hard.tar",
        {},
        [tar_special("h", tarfile.LNKTYPE, "/etc/passwd")],
        "h",
        "hard link",
    ),
    "tar char device": (
        "chr.tar",
        {},
        [tar_special("null", tarfile.CHRTYPE)],
        "null",
        "device file",
    ),
    "tar block device": (
        "blk.tar",
        {},
        [tar_special("sda", tarfile.BLKTYPE)],
        "sda",
        "device file",
    ),
    "tar fifo": ("fifo.tar", {}, [tar_special("pipe", tarfile.FIFOTYPE)], "pipe", "fifo"),
    "file and folder": (
        "clash.tar",
        {"a": b"file", "a/b": b"x"},
        [],
        "a/b",
        "used as a file and as a folder",
    ),
}


def build_evil(src: Path, case: str) -> Path:
    name, files, specials, _, _ = EVIL[case]
    files = {"ok.txt": b"fine", **files}
    if name.endswith(".zip"):
        return make_zip(src / name, files, symlinks=specials)
    return make_tar(src / name, files, specials=specials)


@pytest.mark.parametrize("case", list(EVIL))
def test_dangerous_members_are_refused_and_nothing_is_written(layout, case):
    tmp, src, out = layout
    *_, member, reason = EVIL[case]
    archive = build_evil(src, case)
    before = tree(tmp)
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract(archive, out)
    message = str(excinfo.value)
    assert str(archive) in message and repr(member) in message and reason in message
    assert excinfo.value.member == member
    assert tree(tmp) == before  # nothing outside, nothing inside, no staging folder left


def test_absolute_names_are_stored_as_given(layout):
    """The dangerous names really are in the archives (zipfile/tarfile did not clean them)."""
    _, src, _ = layout
    with zipfile.ZipFile(build_evil(src, "zip absolute")) as zf:
        assert "/tmp/evil.txt" in zf.namelist()
    with tarfile.open(build_evil(src, "tar absolute")) as tf:
        assert "/tmp/evil.txt" in tf.getnames()


def test_symlink_already_in_target_cannot_redirect_a_member(layout):
    tmp, src, out = layout
    outside = tmp / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "photos").symlink_to(outside, target_is_directory=True)
    archive = make_zip(src / "data.zip", {"photos/a.jpg": b"x"})
    with pytest.raises(UnsafeArchiveError, match="resolves outside"):
        safe_extract(archive, out)
    assert list(outside.iterdir()) == []


def test_zip_bomb_is_refused_before_writing(layout):
    tmp, src, out = layout
    archive = make_zip(src / "bomb.zip", {"zeros.bin": bytes(3 * MiB)})
    assert archive.stat().st_size < 64 * 1024
    before = tree(tmp)
    with pytest.raises(
        UnsafeArchiveError, match=r"zip bomb: uncompressed size 3\.0 MiB exceeds the 1\.0 MiB cap"
    ):
        safe_extract(archive, out, max_total_bytes=MiB)
    assert tree(tmp) == before


def test_zip_bomb_message_with_the_default_units(layout):
    _, src, out = layout
    archive = make_zip(src / "bomb.zip", {"zeros.bin": bytes(1000)})
    set_declared_size(archive, 3_000_000_000)
    with pytest.raises(
        UnsafeArchiveError, match=r"uncompressed size 2\.8 GiB exceeds the 2\.0 GiB cap"
    ):
        safe_extract(archive, out, max_total_bytes=2 * 1024**3)
    assert not out.exists()


def test_zip_whose_header_understates_the_size_is_stopped(layout):
    """Declared 1000 bytes (under the cap), really 3 MiB: extraction stops, nothing is left."""
    tmp, src, out = layout
    archive = make_zip(src / "liar.zip", {"zeros.bin": bytes(3 * MiB)})
    set_declared_size(archive, 1000)
    before = tree(tmp)
    with pytest.raises(ArchiveError, match="zeros.bin"):
        safe_extract(archive, out, max_total_bytes=MiB)
    assert tree(tmp) == before


def test_tar_bomb_is_refused_at_its_header(layout):
    tmp, src, out = layout
    archive = make_tar(src / "bomb.tar.gz", {"small.txt": b"x", "zeros.bin": bytes(3 * MiB)})
    before = tree(tmp)
    with pytest.raises(
        UnsafeArchiveError, match=r"decompression bomb.*over the 1\.0 MiB cap"
    ) as excinfo:
        safe_extract(archive, out, max_total_bytes=MiB)
    assert excinfo.value.member == "zeros.bin"
    assert tree(tmp) == before


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_member_count_cap(layout, kind):
    tmp, src, out = layout
    files = {f"{i}.txt": b"x" for i in range(5)}
    archive = (
        make_zip(src / "many.zip", files) if kind == "zip" else make_tar(src / "many.tar", files)
    )
    before = tree(tmp)
    with pytest.raises(UnsafeArchiveError, match="cap of 4"):
        safe_extract(archive, out, max_members=4)
    assert tree(tmp) == before
    assert len(safe_extract(archive, out, max_members=5)) == 5


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(20 * 1024**3) == "20.0 GiB"
    assert human_bytes(5 * 1024**4) == "5.0 TiB"


# -- zip bombs by ratio and by the default total (issue 9) ---------------------------------------


def test_a_zip_bomb_within_the_old_cap_is_refused_by_its_ratio(layout):
    """64 MiB from ~64 KiB (1000:1), well under any size cap: refused by the ratio, before a
    byte is written, and the message says why."""
    tmp, src, out = layout
    archive = zeros_zip(src / "bomb.zip", 64 * MiB)
    assert archive.stat().st_size < 128 * 1024
    before = tree(tmp)
    with pytest.raises(
        UnsafeArchiveError,
        match=r"zip bomb: it inflates [\d,]+:1 \(64\.0 MiB from .*over the limit "
        r"of 100:1 \(max_ratio; config dataset\.archive\.max_ratio\)",
    ):
        safe_extract(archive, out, max_total_bytes=20 * 1024**3)
    assert tree(tmp) == before
    # the limit is the user's to change
    assert len(safe_extract(archive, out, max_ratio=5000, max_total_bytes=128 * MiB)) == 1


def test_a_zip_whose_headers_hide_the_ratio_is_stopped_while_streaming(layout):
    tmp, src, out = layout
    archive = zeros_zip(src / "liar.zip", 8 * MiB)
    set_declared_size(archive, 10_000)  # claims 10 KB: passes the ratio check up front
    before = tree(tmp)
    with pytest.raises(ArchiveError, match="zeros.bin"):
        safe_extract(archive, out)
    assert tree(tmp) == before


def test_the_default_total_is_sized_to_the_archive(layout):
    """A tar.gz has no per-member compressed size: the total cap (100x the archive's own size by
    default) stops it, while streaming its headers, before anything is written."""
    tmp, src, out = layout
    archive = make_tar(src / "bomb.tar.gz", {"a.txt": b"x", "zeros.bin": bytes(16 * MiB)})
    assert archive.stat().st_size * 100 < 16 * MiB
    before = tree(tmp)
    with pytest.raises(
        UnsafeArchiveError,
        match=r"decompression bomb.*cap \(max_total_bytes=\d+; config "
        r"dataset\.archive\.max_bytes",
    ):
        safe_extract(archive, out)
    assert tree(tmp) == before
    # real photos compress about 1:1: an archive of them passes the defaults
    rng = __import__("numpy").random.default_rng(0)
    photos = make_tar(src / "photos.tar.gz", {f"p{i}.jpg": rng.bytes(200_000) for i in range(5)})
    assert len(safe_extract(photos, out)) == 5
