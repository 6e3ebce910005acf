"""Safe extraction of downloaded .zip and .tar(.gz/.bz2/.xz) archives.

A downloaded archive is untrusted input. ``safe_extract`` refuses, before writing anything:

* member names that are absolute (``/etc/x``, ``C:\\x``) or contain a ``..`` component;
* symlinks, hard links, device files and fifos (tar), and zip entries whose Unix mode bits
  say symlink or special file;
* zip bombs: a member that inflates more than ``max_ratio`` times its compressed size, or an
  archive whose files add up to more than ``max_total_bytes`` (default: ``max_ratio`` times
  the archive's own size; real photos compress about 1:1) or hold more than ``max_members``;
* members whose resolved target would land outside ``dest_dir`` (e.g. through a symlink
  already present in ``dest_dir``), or that would turn a file into a folder or back.

The size cap is enforced again while streaming, so an archive whose headers lie is still
stopped. Members are written into a staging folder beside ``dest_dir`` and moved into place
only once every member is out: a refused or corrupt archive leaves nothing behind.
"""

from __future__ import annotations

import logging
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger("colorize.archive")

DEFAULT_MAX_RATIO = 100  # uncompressed / compressed: JPEG, PNG and WebP photos are ~1:1
DEFAULT_MAX_MEMBERS = 1_000_000
# Small members may compress far better than photos (text, blank TIFFs) without harm: the
# per-member ratio applies to members larger than this.
RATIO_MIN_BYTES = 1 << 20
ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
ARCHIVE_SUFFIXES = ZIP_SUFFIXES + TAR_SUFFIXES
_COPY_BUFSIZE = 1 << 20
# What a damaged member raises while being decompressed (bz2 raises a plain OSError).
_READ_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
    NotImplementedError,
    RuntimeError,
)


class ArchiveError(ValueError):
    """The file cannot be extracted: not an archive, or a corrupt one."""


class UnsafeArchiveError(ArchiveError):
    """The archive was refused: a member is dangerous, or the archive exceeds a cap."""

    def __init__(self, archive, member: str | None, reason: str):
        self.archive = str(archive)
        self.member = member
        self.reason = reason
        where = f"member {member!r}: " if member is not None else ""
        super().__init__(f"refusing to extract {self.archive}: {where}{reason}")

    def __reduce__(self):  # pickle by the constructor's arguments (process pools)
        return type(self), (self.archive, self.member, self.reason)


def archive_format(name) -> str | None:
    """``"zip"`` or ``"tar"`` from a file name's suffix, or None if it names no archive."""
    lower = str(name).lower()
    if lower.endswith(ZIP_SUFFIXES):
        return "zip"
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    return None


def detect_format(path) -> str | None:
    """``"zip"`` or ``"tar"`` from the file's content (for a download whose URL has no suffix)."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        return "tar" if tarfile.is_tarfile(path) else None
    except (OSError, EOFError, zlib.error, lzma.LZMAError):  # a damaged compressed stream
        return None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB': sizes in messages a person reads."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"


def default_max_total_bytes(archive_path, max_ratio: float = DEFAULT_MAX_RATIO) -> int:
    """The default cap on everything an archive may extract to: ``max_ratio`` x its size."""
    return int(max_ratio * max(Path(archive_path).stat().st_size, 1))


def safe_extract(
    archive_path,
    dest_dir,
    *,
    max_total_bytes: int | None = None,
    max_ratio: float = DEFAULT_MAX_RATIO,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> list[Path]:
    """Extract a .zip or .tar(.gz/.tgz/.bz2/.xz) into ``dest_dir``; return the files written.

    The format comes from the file name, or from the content when the name has no archive
    suffix. ``dest_dir`` may already exist and hold files; a member with the same path
    replaces a file. Returns ``dest_dir / member`` for every regular file, in archive order
    (directory entries are created, not listed). Raises ``UnsafeArchiveError`` naming the
    archive, the member and the reason, or ``ArchiveError`` if the file cannot be read as an
    archive (both are ``ValueError``s); either way nothing is left in or beside ``dest_dir``.

    ``max_total_bytes`` None is ``default_max_total_bytes`` (``max_ratio`` x the archive's
    size). Both limits are checked on the declared sizes before anything is written and again
    on the bytes that actually come out, before each chunk is written.
    """
    archive_path = Path(archive_path)
    if max_total_bytes is None:
        max_total_bytes = default_max_total_bytes(archive_path, max_ratio)
    dest_given = Path(dest_dir)
    dest = dest_given.resolve()
    kind = archive_format(archive_path.name) or detect_format(archive_path)
    if kind is None:
        raise ArchiveError(f"{archive_path}: not a zip or tar archive")
    reader_cls = _ZipReader if kind == "zip" else _TarReader
    with reader_cls(archive_path) as reader:
        members = _checked_members(
            archive_path, reader, dest, max_total_bytes, max_members, max_ratio
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent)
        )
        try:
            _write_members(archive_path, members, reader, staging, max_total_bytes, max_ratio)
            dest.mkdir(exist_ok=True)
            _merge(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    files = list(dict.fromkeys(m.relpath for m in members if not m.is_dir))
    log.info(
        "extracted %d files (%s) from %s into %s",
        len(files),
        human_bytes(sum(m.size for m in members)),
        archive_path,
        dest_given,
    )
    return [dest_given.joinpath(*p.parts) for p in files]


# -- the two formats behind one interface ---------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One archive entry as the reader sees it, before any check."""

    name: str  # as stored in the archive
    kind: str  # "file", "dir", or what else it is ("symlink", "device file", ...)
    size: int  # declared uncompressed size
    raw: zipfile.ZipInfo | tarfile.TarInfo
    compressed: int | None = None  # zip: the member's compressed size; tar: None (one stream)


@dataclass(frozen=True)
class _Member:
    """An entry that passed every check."""

    entry: _Entry
    relpath: PurePosixPath  # normalised path under dest_dir

    @property
    def is_dir(self) -> bool:
        return self.entry.kind == "dir"

    @property
    def size(self) -> int:
        return self.entry.size


class _ZipReader:
    bomb_name = "zip bomb"

    def __init__(self, path: Path):
        try:
            self._zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ArchiveError(f"{path}: not a readable zip archive: {e}") from None
        self.infos = self._zf.infolist()  # the central directory: every size is known up front

    def entries(self):
        for info in self.infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                kind = "symlink"
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                kind = f"special file (mode {oct(mode)})"
            else:
                kind = "dir" if info.is_dir() else "file"
            yield _Entry(info.filename, kind, info.file_size, info, info.compress_size)

    def open(self, member: _Member):
        return self._zf.open(member.entry.raw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zf.close()


class _TarReader:
    bomb_name = "decompression bomb"

    def __init__(self, path: Path):
        self.path = path
        try:
            self._tf = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
            raise ArchiveError(f"{path}: not a readable tar archive: {e}") from None

    def entries(self):
        """One header at a time, so the caps stop a bomb before its body is decompressed."""
        while True:
            try:
                ti = self._tf.next()
            except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
                raise ArchiveError(f"{self.path}: corrupt tar archive: {e}") from None
            if ti is None:
                return
            if ti.issym():
                kind = f"symlink (to {ti.linkname!r})"
            elif ti.islnk():
                kind = f"hard link (to {ti.linkname!r})"
            elif ti.ischr() or ti.isblk():
                kind = "device file"
            elif ti.isfifo():
                kind = "fifo"
            elif ti.isdir():
                kind = "dir"
            elif ti.isfile():
                kind = "file"
            else:
                kind = f"member of tar type {ti.type!r}"
            yield _Entry(ti.name, kind, ti.size, ti)

    def open(self, member: _Member):
        return self._tf.extractfile(member.entry.raw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._tf.close()


# -- checks, all before anything is written -------------------------------------------------


def _member_relpath(archive: Path, name: str) -> PurePosixPath:
    """The member's path relative to dest_dir ('.' for the root itself), or UnsafeArchiveError."""
    if "\x00" in name:
        raise UnsafeArchiveError(archive, name, "NUL byte in the name")
    if name.startswith(("/", "\\")) or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
        raise UnsafeArchiveError(archive, name, "absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            archive, name, "'..' in the path (it would escape the target folder)"
        )
    return PurePosixPath(*parts)


def _ratio_limit(compressed: int, max_ratio: float) -> float:
    """Most bytes a zip member of ``compressed`` bytes may inflate to."""
    return max(max_ratio * compressed, RATIO_MIN_BYTES)


def _ratio_text(size: int, compressed: int, max_ratio: float) -> str:
    ratio = size / max(compressed, 1)
    return (
        f"zip bomb: it inflates {ratio:,.0f}:1 ({human_bytes(size)} from {human_bytes(compressed)}), "
        f"over the limit of {max_ratio:g}:1 (max_ratio; config dataset.archive.max_ratio)"
    )


def _checked_members(
    archive: Path,
    reader,
    dest: Path,
    max_total_bytes: int,
    max_members: int,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> list[_Member]:
    cap_text = (
        f"the {human_bytes(max_total_bytes)} cap (max_total_bytes={max_total_bytes}; "
        "config dataset.archive.max_bytes, default max_ratio x the archive's size)"
    )
    if isinstance(reader, _ZipReader):  # everything is declared up front: check the whole at once
        infos = reader.infos
        if len(infos) > max_members:
            raise UnsafeArchiveError(
                archive,
                None,
                f"{len(infos):,} members exceed the cap of {max_members:,} (max_members)",
            )
        declared = sum(i.file_size for i in infos)
        if declared > max_total_bytes:
            biggest = max(infos, key=lambda i: i.file_size)
            raise UnsafeArchiveError(
                archive,
                biggest.filename,
                f"zip bomb: uncompressed size {human_bytes(declared)} exceeds {cap_text}",
            )
        for i in infos:
            if i.file_size > _ratio_limit(i.compress_size, max_ratio):
                raise UnsafeArchiveError(
                    archive, i.filename, _ratio_text(i.file_size, i.compress_size, max_ratio)
                )

    # Symlinks or files already in dest could redirect or block a member: check each target
    # then. A fresh (missing or empty) dest has none, and large archives skip the stat calls.
    dest_has_content = dest.is_dir() and any(dest.iterdir())
    members: list[_Member] = []
    file_paths: set[PurePosixPath] = set()
    dir_paths: set[PurePosixPath] = set()
    total = 0
    for entry in reader.entries():
        if len(members) >= max_members:
            raise UnsafeArchiveError(
                archive, entry.name, f"more members than the cap of {max_members:,} (max_members)"
            )
        if entry.kind not in ("file", "dir"):
            raise UnsafeArchiveError(archive, entry.name, f"{entry.kind} not allowed")
        relpath = _member_relpath(archive, entry.name)
        is_dir = entry.kind == "dir"
        if not is_dir:
            total += entry.size
            if total > max_total_bytes:
                raise UnsafeArchiveError(
                    archive,
                    entry.name,
                    f"{reader.bomb_name}: uncompressed size reaches "
                    f"{human_bytes(total)} here, over {cap_text}",
                )
        if not relpath.parts:
            if is_dir:
                continue
            raise UnsafeArchiveError(archive, entry.name, "a file with an empty name")
        parents = set(relpath.parents)
        parents.discard(PurePosixPath("."))
        if (relpath in (dir_paths if not is_dir else file_paths)) or not parents.isdisjoint(
            file_paths
        ):
            raise UnsafeArchiveError(
                archive, entry.name, "the same path is used as a file and as a folder"
            )
        (dir_paths if is_dir else file_paths).add(relpath)
        dir_paths |= parents
        if dest_has_content:
            _check_target(archive, entry.name, relpath, is_dir, dest)
        members.append(_Member(entry, relpath))
    return members


def _check_target(
    archive: Path, name: str, relpath: PurePosixPath, is_dir: bool, dest: Path
) -> None:
    """Resolve the target (following symlinks already in dest): it must stay inside dest."""
    target = dest.joinpath(*relpath.parts)
    resolved = target.resolve()
    if not resolved.is_relative_to(dest):
        raise UnsafeArchiveError(
            archive, name, f"its target resolves outside {dest}, to {resolved}"
        )
    for folder in [target.parent, *target.parent.parents]:
        if folder == dest:
            break
        if folder.exists() and not folder.is_dir():
            raise UnsafeArchiveError(archive, name, f"{folder} already exists and is not a folder")
    if target.exists() and target.is_dir() != is_dir:
        what = "a folder" if target.is_dir() else "a file"
        raise UnsafeArchiveError(archive, name, f"{target} already exists and is {what}")


# -- writing --------------------------------------------------------------------------------


def _write_members(
    archive: Path,
    members: list[_Member],
    reader,
    staging: Path,
    max_total_bytes: int,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> None:
    staging_root = staging.resolve()
    written = 0
    for m in members:
        member_limit = (
            None if m.entry.compressed is None else _ratio_limit(m.entry.compressed, max_ratio)
        )
        member_out = 0
        target = staging.joinpath(*m.relpath.parts)
        if not target.resolve().is_relative_to(
            staging_root
        ):  # ruled out by the checks; belt and braces
            raise UnsafeArchiveError(
                archive, m.entry.name, "its target resolves outside the staging folder"
            )
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as dst:
            try:
                src = reader.open(m)
            except _READ_ERRORS as e:
                raise ArchiveError(
                    f"{archive}: cannot extract member {m.entry.name!r}: {e}"
                ) from None
            with src:
                while True:
                    try:
                        chunk = src.read(_COPY_BUFSIZE)
                    except _READ_ERRORS as e:
                        raise ArchiveError(
                            f"{archive}: cannot extract member {m.entry.name!r}: {e}"
                        ) from None
                    if not chunk:
                        break
                    written += len(chunk)
                    member_out += len(chunk)
                    if member_limit is not None and member_out > member_limit:
                        raise UnsafeArchiveError(
                            archive,
                            m.entry.name,
                            _ratio_text(member_out, m.entry.compressed, max_ratio)
                            + ", although its header said less",
                        )
                    if written > max_total_bytes:
                        raise UnsafeArchiveError(
                            archive,
                            m.entry.name,
                            f"decompression bomb: more than the {human_bytes(max_total_bytes)} cap "
                            f"(max_total_bytes={max_total_bytes}) came out, although the headers said less",
                        )
                    dst.write(chunk)


def _merge(src: Path, dst: Path) -> None:
    """Move the staged tree into dst, merging into folders that already exist there."""
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir():
            _merge(Path(entry.path), target)
        else:
            os.replace(entry.path, target)
