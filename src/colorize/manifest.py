"""Stage 1's manifest: one row for EVERY input file, and the dataset summary.

``scan`` hashes and header-checks every file (threads: hashing releases the GIL), assigns
each usable one to a (split, shard), and marks the rest with the reason they are excluded.
``merge`` folds in the per-shard decode statuses, so the final ``manifest.tsv`` says, for
every file the user gave, whether it reached a shard and if not, why.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import split as splitmod
from .imageio import ImageDecodeError, check_size, is_image_name, read_header
from .tsv import read_tsv

log = logging.getLogger("colorize.manifest")

SCAN_COLUMNS = ["relpath", "bytes", "sha256", "width", "height", "format", "split", "shard", "status"]
OK = "ok"
SNAKEMAKE_MARKER = ".snakemake_timestamp"  # written by Snakemake into directory() outputs

# Real colour photos shipped inside scikit-image's wheel: the offline default data set.
# The gray ones among them (camera, moon, ...) stay in on purpose: the manifest shows them
# excluded as grayscale, as a user's own folder would.
BUILTIN_EXCLUDE = frozenset()


def sha256_file(path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def matches(relpath: str, include) -> bool:
    """Does a relative path match one of the ``dataset.include`` glob patterns?
    ``*`` stays within a folder, ``**`` crosses folders (``intel/train/**``)."""
    return any(fnmatch.fnmatchcase(relpath, pat) or (pat.endswith("/**") and relpath.startswith(pat[:-2]))
               for pat in include)


def list_files(root, include=("**",)) -> list[str]:
    """Every regular file below ``root`` (recursive, following folder links) whose relative
    path matches ``include``, as sorted POSIX relative paths. Non-images are listed too: the
    manifest says why they were left out."""
    root = Path(root)
    include = list(include)
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in filenames:
            if name == SNAKEMAKE_MARKER:
                continue
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_file() and ("**" in include or matches(rel, include)):
                out.append(rel)
    return sorted(out)


def copy_builtin(dest) -> list[Path]:
    """Copy the images that ship with scikit-image into ``dest`` (the 'builtin' source)."""
    import skimage

    src = Path(skimage.__file__).parent / "data"
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for p in sorted(src.iterdir()):
        if p.is_file() and is_image_name(p) and p.name not in BUILTIN_EXCLUDE:
            shutil.copy2(p, dest / p.name)
            copied.append(dest / p.name)
    if not copied:
        raise RuntimeError(f"no images found in scikit-image's data folder {src}")
    return copied


def _inspect(root: Path, relpath: str, max_pixels: int, min_side: int) -> dict:
    p = root / relpath
    row = {"relpath": relpath, "bytes": p.stat().st_size, "sha256": "", "width": "", "height": "",
           "format": "", "split": "", "shard": "", "status": OK}
    row["sha256"] = sha256_file(p)
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


def scan(root, *, val_fraction: float, test_fraction: float, shards: dict, seed: int = 0,
         max_pixels: int = 100_000_000, min_side: int = 32, threads: int = 4, progress: bool = True,
         include=("**",)) -> list[dict]:
    from tqdm import tqdm

    root = Path(root)
    relpaths = list_files(root, include)
    if not relpaths:
        raise ValueError(f"no files found under {root} matching dataset.include {list(include)}")
    with ThreadPoolExecutor(max(1, threads)) as pool:
        rows = list(tqdm(pool.map(lambda r: _inspect(root, r, max_pixels, min_side), relpaths),
                         total=len(relpaths), desc="scan", unit="file", disable=not progress, mininterval=1.0))
    first_seen: dict[str, str] = {}
    for row in rows:  # sorted by relpath: the first copy of a duplicate is kept
        if row["status"] != OK:
            continue
        if row["sha256"] in first_seen:
            row["status"] = f"duplicate (same sha256 as {first_seen[row['sha256']]})"
            continue
        first_seen[row["sha256"]] = row["relpath"]
        row["split"], shard = splitmod.assign(row["relpath"], val_fraction=val_fraction,
                                              test_fraction=test_fraction, shards=shards, seed=seed)
        row["shard"] = f"{shard:03d}"
    return rows


def shard_rows(scan_rows: list[dict], split: str, shard: str) -> list[dict]:
    """The rows of one shard, in manifest order."""
    return [r for r in scan_rows if r["status"] == OK and r["split"] == split and r["shard"] == shard]


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
