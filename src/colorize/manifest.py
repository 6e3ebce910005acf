"""Stage 1's manifest: one row for EVERY input file, and the dataset summary.

``scan`` hashes and header-checks every file (threads: hashing releases the GIL), assigns
each usable one to a (split, shard), and marks the rest with the reason they are excluded.
``merge`` folds in the per-shard decode statuses, so the final ``manifest.tsv`` says, for
every file the user gave, whether it reached a shard and if not, why.

The workflow's rerun triggers of the data stage are one string each, not one Snakemake input
per photo (which cost 0.2-0.3 ms of DAG building per photo, twice): ``folder_stamp`` for the
scan of a local folder, ``shard_digest`` (read from the scan table) for each shard.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import hashlib
import logging
import os
import shutil
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import split as splitmod
from .files import sha256_file
from .imageio import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ImageDecodeError,
    check_size,
    is_image_name,
    read_header,
)
from .tsv import is_utf8_name, printable_name, read_tsv, unescape

log = logging.getLogger("colorize.manifest")

SCAN_COLUMNS = [
    "relpath",
    "bytes",
    "sha256",
    "width",
    "height",
    "format",
    "split",
    "shard",
    "status",
]
OK = "ok"


def _empty_row(relpath: str, status: str) -> dict:
    """A scan row of ``SCAN_COLUMNS`` with only the path and status filled in."""
    return {**dict.fromkeys(SCAN_COLUMNS, ""), "relpath": relpath, "status": status}


SNAKEMAKE_MARKER = ".snakemake_timestamp"  # written by Snakemake into directory() outputs


def matches(relpath: str, include) -> bool:
    """Does a relative path match one of the ``dataset.include`` glob patterns?
    ``*`` stays within a folder, ``**`` crosses folders (``intel/train/**``)."""
    return any(
        fnmatch.fnmatchcase(relpath, pat) or (pat.endswith("/**") and relpath.startswith(pat[:-2]))
        for pat in include
    )


@dataclass(frozen=True)
class Listing:
    """What a folder holds: the files to use, and every entry refused with its reason."""

    files: list[str]  # sorted POSIX relative paths of regular files (through allowed links)
    refused: dict[str, str]  # relative path (printable) -> why it is not used


LINK_SWITCH = "dataset.follow_external_links"


def walk(
    root,
    include=("**",),
    follow_external_links: bool = False,
    *,
    recursive: bool = True,
    exclude=(),
    hidden: bool = True,
    utf8_only: bool = True,
    looks_wanted=None,
    link_switch: str = f"set {LINK_SWITCH}: true",
    what: str = "source folder",
) -> Listing:
    """Every regular file below ``root`` whose relative path matches ``include``, and every
    entry that cannot be used, with the reason, so that nothing is dropped silently. The one
    link policy of every folder the project reads (a source folder, an evaluation folder, the
    folders ``colorize predict`` and ``colorize.input_dir`` colorize):

    * a symbolic link (to a file or a folder) is followed when its target lies inside ``root``;
      a link that leaves ``root`` is refused unless ``follow_external_links`` (a folder is
      read, hashed and listed: a stray link must not pull ``/etc/passwd`` into a data set, nor
      into a folder of colorized photos); the reason says how to allow it (``link_switch``);
      broken links, link loops and special files (fifos, sockets, devices) are refused;
    * a name that is not valid UTF-8 is refused when ``utf8_only`` (shown with its bad bytes
      as ``\\xNN``): the manifests are UTF-8 text, and Snakemake cannot take such a path as an input;
    * ``hidden`` False: a hidden file (a name starting with ".", such as the ``._IMG_0001.jpg``
      copies macOS leaves on shared drives) is refused, and a hidden folder is not searched;
    * ``recursive`` False: only the files of ``root`` itself (sub-folders are not searched);
    * ``exclude``: folders never listed nor searched, also when reached through a link (an
      output folder inside the input folder);
    * ``looks_wanted``: a test of a relative name (e.g. ``imageio.is_image_name``): only the
      files, and the refused files, that pass it are returned (refused folders always are);
    * Snakemake's own ``.snakemake_timestamp`` marker is skipped.
    """
    root = Path(root)
    real_root = root.resolve()
    include = list(include)
    everything = "**" in include
    excluded = [Path(os.path.realpath(e)) for e in exclude]
    files: list[str] = []
    refused: dict[str, str] = {}

    def wanted(rel: str, is_dir: bool = False) -> bool:
        if not is_dir and looks_wanted is not None and not looks_wanted(rel):
            return False
        return everything or matches(rel, include) or (is_dir and matches(rel + "/", include))

    def refuse(rel: str, reason: str, is_dir: bool = False) -> None:
        if wanted(rel, is_dir):
            refused[printable_name(rel)] = reason

    def is_excluded(real: Path) -> bool:
        return any(real == e or real.is_relative_to(e) for e in excluded)

    def visit(folder: Path, prefix: str, seen: frozenset) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            refuse(prefix.rstrip("/") or ".", f"folder cannot be read ({e.strerror})", True)
            return
        real_folder = Path(os.path.realpath(folder)) if excluded else None
        for entry in entries:
            if entry.name == SNAKEMAKE_MARKER:
                continue
            rel = prefix + entry.name
            if excluded and is_excluded(real_folder / entry.name):
                continue
            if not hidden and entry.name.startswith("."):
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir and recursive:
                    refuse(rel, "hidden folder (its name starts with '.'): not searched", True)
                elif not is_dir:
                    refuse(rel, "hidden file (its name starts with '.'): name it to colorize it")
                continue
            if not entry.is_symlink() and (not utf8_only or is_utf8_name(entry.name)):
                # the common case, from the directory entry alone (no stat of the file)
                if entry.is_file(follow_symlinks=False):
                    if wanted(rel):
                        files.append(rel)
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    refuse(rel, "not a regular file (fifo, socket or device)")
                    continue
            path = Path(entry.path)
            is_link = entry.is_symlink()
            try:
                target = path.resolve(strict=is_link) if is_link else path
            except RuntimeError:  # RuntimeError("Symlink loop") on Python 3.11, OSError ELOOP later
                refuse(rel, f"symlink loop (to {printable_name(os.readlink(path))!r})")
                continue
            except OSError as e:
                shown = printable_name(os.readlink(path))
                if e.errno == errno.ELOOP:
                    refuse(rel, f"symlink loop (to {shown!r})")
                elif e.errno in (errno.ENOENT, errno.ENOTDIR):
                    refuse(rel, f"broken symlink (to {shown!r})")
                else:
                    refuse(rel, f"symlink cannot be followed (to {shown!r}: {e.strerror})")
                continue
            if is_link:
                shown = printable_name(os.readlink(path))
                if excluded and is_excluded(target):
                    continue
                if not target.is_relative_to(real_root) and not follow_external_links:
                    refuse(
                        rel,
                        f"symlink leaves the {what} (to {shown!r}; {link_switch} to follow it)",
                        target.is_dir(),
                    )
                    continue
            if utf8_only and not is_utf8_name(entry.name):
                is_dir = target.is_dir()
                hint = "its files are not used" if is_dir else "its bad bytes are shown as \\xNN"
                refuse(
                    rel,
                    f"{'folder' if is_dir else 'file'} name is not valid UTF-8 (rename it; {hint})",
                    is_dir,
                )
                continue
            if target.is_dir():
                if not recursive:
                    continue
                real = target.resolve()
                if real in seen:
                    if is_link:
                        refuse(
                            rel, f"symlink loop (to {printable_name(os.readlink(path))!r})", True
                        )
                    continue
                visit(path, rel + "/", seen | {real})
            elif target.is_file():
                if wanted(rel):
                    files.append(rel)
            else:
                refuse(rel, "not a regular file (fifo, socket or device)")

    if not root.is_dir():
        raise FileNotFoundError(f"{what} {str(root)!r} does not exist")
    visit(root, "", frozenset({real_root}))
    return Listing(sorted(files), dict(sorted(refused.items())))


def list_files(root, include=("**",), follow_external_links: bool = False) -> list[str]:
    """The usable files of ``walk``: sorted POSIX relative paths (non-images included: the
    manifest says why they were left out)."""
    return walk(root, include, follow_external_links).files


def folder_stamp(root, include=("**",), follow_external_links: bool = False) -> str:
    """A digest of what ``walk`` finds: each file's relative path, size and modification time
    (ns; a link's target's), and each refused entry with its reason. It changes when a file is
    added, removed, replaced or touched, so it is the workflow's rerun trigger of the scan: one
    listing and one ``stat`` per file instead of every file as a Snakemake input."""
    listing = walk(root, include, follow_external_links)
    digest = hashlib.sha256()  # fields end with NUL, the one character no file name holds
    for rel in listing.files:
        try:
            st = os.stat(os.path.join(root, rel))
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        except OSError as e:  # vanished since the listing, or unreadable: the scan says so
            digest.update(f"{rel}\0cannot stat\0{e.errno}\0".encode())
    for rel, reason in listing.refused.items():
        digest.update(f"{rel}\0refused\0{reason}\0".encode())
    return digest.hexdigest()


def copy_builtin(dest) -> list[Path]:
    """Copy the images that ship with scikit-image into ``dest`` (the 'builtin' source): real
    colour photos, the offline default data set. The gray ones among them (camera, moon, ...)
    stay in on purpose: the manifest shows them excluded as grayscale, as a user's own folder would."""
    import skimage

    src = Path(skimage.__file__).parent / "data"
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for p in sorted(src.iterdir()):
        if p.is_file() and is_image_name(p):
            shutil.copy2(p, dest / p.name)
            copied.append(dest / p.name)
    if not copied:
        raise RuntimeError(f"no images found in scikit-image's data folder {src}")
    return copied


def source_of(relpath: str) -> str:
    """The source of an image of a multi-source dataset: the first component of its relative
    path (``flowers/a/b.jpg`` -> ``flowers``); ``.`` for a file at the top of a folder."""
    return relpath.split("/", 1)[0] if "/" in relpath else "."


def source_path(root, relpath: str) -> Path:
    """Where a manifest's relative path lies: below ``root`` (one folder), or for a mapping
    ``{source name: folder}`` (several sources) below the folder its first component names."""
    if isinstance(root, Mapping):
        name, rest = relpath.split("/", 1)
        return Path(root[name]) / rest
    return Path(root) / relpath


def _inspect(root, relpath: str, max_pixels: int, min_side: int) -> dict:
    p = source_path(root, relpath)
    row = _empty_row(relpath, OK)
    try:
        row["bytes"] = p.stat().st_size
        row["sha256"] = sha256_file(p)
    except OSError as e:  # vanished, or unreadable (permissions): this file, not the scan
        row["status"] = f"cannot read the file ({e.strerror or e})"
        return row
    if not is_image_name(p):
        row["status"] = f"not an image file (extension {p.suffix or 'none'!r})"
        return row
    try:
        header = read_header(p)
        row.update(width=header.width, height=header.height, format=header.format)
        check_size(p, header, max_pixels=max_pixels, min_side=min_side)
    except ImageDecodeError as e:
        row["status"] = e.reason
    return row


def scan(
    root,
    *,
    val_fraction: float,
    test_fraction: float,
    shards: dict,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    threads: int = 4,
    progress: bool = True,
    include=("**",),
    follow_external_links: bool = False,
) -> list[dict]:
    """One row per entry of ``root`` (``walk``): usable files header-checked and hashed, refused
    entries (links leaving the folder, names that are not UTF-8, ...) with their reason.

    ``root`` may be a mapping ``{source name: folder}`` (issue 20): every folder is walked, its
    paths prefixed with ``<name>/``, and the sources are one dataset: duplicates are found
    across them, and the split is made per source (``split.assign_stratified``)."""
    from tqdm import tqdm

    if isinstance(root, Mapping):
        files, refused = [], {}
        for name, folder in root.items():
            part = walk(folder, include, follow_external_links)
            files += [f"{name}/{rel}" for rel in part.files]
            refused.update({f"{name}/{rel}": reason for rel, reason in part.refused.items()})
        listing = Listing(sorted(files), dict(sorted(refused.items())))
    else:
        root = Path(root)
        listing = walk(root, include, follow_external_links)
    relpaths = listing.files
    if not relpaths and not listing.refused:
        raise ValueError(f"no files found under {root} matching dataset.include {list(include)}")
    for rel, reason in listing.refused.items():
        log.warning("excluded %s: %s", rel, reason)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        rows = list(
            tqdm(
                pool.map(lambda r: _inspect(root, r, max_pixels, min_side), relpaths),
                total=len(relpaths),
                desc="scan",
                unit="file",
                disable=not progress,
                mininterval=1.0,
            )
        )
    rows += [_empty_row(rel, reason) for rel, reason in listing.refused.items()]
    rows.sort(key=lambda r: r["relpath"])
    first_seen: dict[str, str] = {}
    for row in rows:  # sorted by relpath: the first copy of a duplicate is kept
        if row["status"] != OK:
            continue
        if row["sha256"] in first_seen:
            row["status"] = f"duplicate (same sha256 as {first_seen[row['sha256']]})"
            continue
        first_seen[row["sha256"]] = row["relpath"]
        if not isinstance(root, Mapping):
            row["split"], shard = splitmod.assign(
                row["relpath"],
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                shards=shards,
                seed=seed,
            )
            row["shard"] = f"{shard:03d}"
    if isinstance(root, Mapping):
        by_source: dict[str, list[str]] = {name: [] for name in root}
        usable = [row for row in rows if row["status"] == OK]
        for row in usable:
            by_source[source_of(row["relpath"])].append(row["relpath"])
        assigned = splitmod.assign_stratified(
            by_source,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            shards=shards,
            seed=seed,
        )
        for row in usable:
            row["split"], shard = assigned[row["relpath"]]
            row["shard"] = f"{shard:03d}"
    return rows


def shard_rows(scan_rows: list[dict], split: str, shard: str) -> list[dict]:
    """The rows of one shard, in manifest order."""
    return [
        r for r in scan_rows if r["status"] == OK and r["split"] == split and r["shard"] == shard
    ]


def _usable_lines(scan_tsv):
    """(header, fields) of each usable row (status ok) of a scan table, a line at a time (a
    table of a million photos is never held whole), the fields as written (escaped)."""
    with open(scan_tsv, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        status = header.index("status")
        for line in fh:
            if not line.endswith("\n"):
                break  # cut short (a writer killed mid-line), as read_tsv drops it
            fields = line[:-1].split("\t")  # an escaped field holds no tab
            if len(fields) == len(header) and fields[status] == OK:
                yield header, fields


def read_shard_rows(scan_tsv, split: str, shard: str) -> list[dict]:
    """``shard_rows(read_tsv(scan_tsv), split, shard)``, parsing only that shard's rows."""
    rows = []
    for header, fields in _usable_lines(scan_tsv):
        row = dict(zip(header, fields))
        if row["split"] == split and row["shard"] == shard:
            rows.append({k: unescape(v) for k, v in row.items()})
    return rows


EMPTY_SHARD = hashlib.sha256().hexdigest()  # the digest of a shard no photo is assigned to


@functools.lru_cache(maxsize=4)
def _shard_digests(scan_tsv: str, version: tuple) -> dict[tuple[str, str], str]:
    digests = {}
    for header, fields in _usable_lines(scan_tsv):
        row = dict(zip(header, fields))
        key = (row["split"], row["shard"])
        if key not in digests:
            digests[key] = hashlib.sha256()
        digests[key].update(f"{row['relpath']}\t{row['sha256']}\n".encode())
    return {key: d.hexdigest() for key, d in digests.items()}


def shard_digest(scan_tsv, split: str, shard: str) -> str:
    """A digest of the photos a scan table assigns to one shard: the relative path and sha256
    of each, in table order. It changes exactly when the shard's content would (a photo of it
    added, removed or edited), so the workflow passes it to the shard job as a parameter, its
    rerun trigger, instead of every photo as an input. The table is parsed once per version
    for all its shards, not once per shard job: a version is its inode, mtime and size (a table
    is written to a new file and renamed into place, so a new one has a new inode)."""
    st = os.stat(scan_tsv)
    version = (st.st_ino, st.st_mtime_ns, st.st_size)
    return _shard_digests(str(scan_tsv), version).get((split, shard), EMPTY_SHARD)


def reason_category(status: str) -> str:
    """'grayscale (mean chroma 0.4 < 3.0)' -> 'grayscale': what summaries count by."""
    return status.split(" (", 1)[0]


def merge(scan_rows: list[dict], shard_status_files) -> list[dict]:
    """The final manifest: scan rows with the decode status from each shard folded in."""
    status = {}
    for f in shard_status_files:
        for r in read_tsv(f):
            status[r["relpath"]] = r["status"]
    merged = []
    for row in scan_rows:
        row = dict(row)
        if row["status"] == OK:
            row["status"] = status.get(row["relpath"], "missing from its shard (internal error)")
            if row["status"] != OK:
                row["split"], row["shard"] = "", ""
        merged.append(row)
    return merged


def summarize(rows: list[dict]) -> list[dict]:
    """Counts per split (images in shards) and per exclusion reason."""
    counts = Counter()
    for r in rows:
        if r["status"] == OK:
            counts[("split", r["split"])] += 1
        else:
            counts[("excluded", reason_category(r["status"]))] += 1
    out = [{"kind": "total", "name": "files", "count": len(rows)}]
    for split in splitmod.SPLITS:
        out.append({"kind": "split", "name": split, "count": counts.get(("split", split), 0)})
    for (kind, name), n in sorted(counts.items()):
        if kind == "excluded":
            out.append({"kind": kind, "name": name, "count": n})
    return out
