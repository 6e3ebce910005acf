"""A colorize run spread over jobs: the chunk of each photo, one chunk's inputs and its job in the
workflow, the fingerprint that tells Snakemake a chunk changed, and the chunks' status tables
gathered into one.

A photo's chunk comes from the hash that assigns shards (``split.assign_shard``), taken of its
relative name without the extension, lowercased. The same name always lands in the same chunk,
whatever else the folder holds, so adding photos changes only the chunks they land in. And the
files that would write the same output (``a.gif`` and ``a.png`` both make ``a.png``; ``A.jpg`` and
``a.jpg`` on a case-insensitive disk) share a chunk, where ``colorize_files`` keeps the first and
reports the others, as one run over the whole folder does: chunked and unchunked runs write the
same bytes and the same status rows. Chunks count from 1 (chunk K of N, K = 1..N), as the task
ids of a SLURM array ``--array=1-N`` do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePath

from .files import atomic_copy, atomic_write_text
from .infer import Input, collect_inputs, colorize_files
from .split import assign_shard
from .status import STATUS_COLUMNS, Results, previous_status, source_stamp
from .tsv import printable_name, read_tsv, table_text

log = logging.getLogger("colorize.chunks")

Inputs = Sequence[Input]  # (file, relative output name, why refused), as collect_inputs makes them
_CHUNK_TABLE = re.compile(r"status\.chunk-(\d+)-of-(\d+)\.tsv")


class GatherError(ValueError):
    """Chunk status tables that cannot be gathered: missing, not status tables, or overlapping."""


def check_chunk(k: int, n: int) -> None:
    """Chunk K of N exists: N >= 1 and 1 <= K <= N (else ``ValueError`` saying so)."""
    if n < 1:
        raise ValueError(f"the number of chunks must be at least 1, got {n}")
    if not 1 <= k <= n:
        raise ValueError(f"chunk {k} of {n} does not exist: chunks count from 1 to {n}")


def chunk_of(relname: str | PurePath, n: int) -> int:
    """The chunk (1..n) of a photo, from its relative name (see the module's docstring)."""
    key = PurePath(relname).with_suffix("").as_posix().lower()
    return assign_shard(printable_name(key), n) + 1  # a name that is not UTF-8: by its \\xNN form


def select_chunk(inputs: Inputs, k: int, n: int) -> list[Input]:
    """The inputs of chunk ``k`` of ``n``, in their order."""
    check_chunk(k, n)
    return [item for item in inputs if chunk_of(item[1], n) == k]


def chunk_status_name(k: int, n: int) -> str:
    """The file name of chunk K of N's status table, K zero-padded so that a listing sorts by K."""
    check_chunk(k, n)
    return f"status.chunk-{k:0{len(str(n))}d}-of-{n}.tsv"


LINK_SWITCH = "colorize.follow_external_links"


def folder_inputs(folder, exclude: Sequence = (), follow_links: bool = False) -> list[Input]:
    """The photos of a folder and its sub-folders that the workflow colorizes (``LINK_SWITCH``:
    follow links that leave it): one listing for the jobs and for the fingerprints Snakemake
    compares (``chunk_fingerprints``)."""
    return collect_inputs(
        [folder], recursive=True, exclude=exclude, follow_links=follow_links,
        link_switch=f"set {LINK_SWITCH}: true",
    )  # fmt: skip


def chunk_fingerprints(inputs: Inputs, n: int) -> dict[int, str]:
    """Chunk (1..n) -> a short hash of its members' names, sizes and modification times: a rule
    parameter that changes when, and only when, a photo of that chunk is added, removed or
    modified, so that Snakemake reruns that chunk's job and no other."""
    digests = {k: hashlib.sha256() for k in range(1, n + 1)}
    for path, rel, *_ in inputs:
        digests[chunk_of(rel, n)].update(
            os.fsencode(str(rel)) + f"\t{source_stamp(path)}\n".encode()
        )
    return {k: d.hexdigest()[:16] for k, d in digests.items()}


def remove_stale_outputs(before: Sequence[dict], results: Results, output_dir) -> list[Path]:
    """Delete the outputs an earlier run of a chunk wrote (its status rows ``before``) that this
    run did not: their photo left the folder. The output tree then holds what the status tables
    list, as when one job rewrote the whole folder. Only files inside ``output_dir`` go."""
    root = Path(output_dir).resolve()
    written = {printable_name(r.output) for r in results if r.ok}
    removed = []
    for row in before:
        out = Path(row["output"])
        if (
            row["output"]
            and row["output"] not in written
            and out.resolve().is_relative_to(root)
            and out.is_file()
        ):
            out.unlink()
            removed.append(out)
    return removed


def colorize_chunk(
    model, folder, k: int, n: int, output_dir, table, journal, exclude: Sequence = (),
    follow_links: bool = False, **options,
) -> Results:  # fmt: skip
    """The workflow's job for chunk K of N of ``folder``: colorize its photos into the one output
    tree ``output_dir`` that all chunks share, resuming from ``journal``, then copy the journal
    to ``table``. The journal is not a declared output, so it survives Snakemake deleting the
    outputs of a failed or rerun job: a rerun redoes only the photos not done, or changed, since.
    ``exclude``: folders never taken as input (``output_dir`` never is); ``follow_links``: as
    ``folder_inputs``; ``options`` go to ``colorize_files``."""
    listing = folder_inputs(folder, exclude=[output_dir, *exclude], follow_links=follow_links)
    inputs = select_chunk(listing, k, n)
    before = list(previous_status(journal).values())
    results = colorize_files(model, inputs, output_dir, status_path=journal, resume=True, **options)
    removed = remove_stale_outputs(before, results, output_dir)
    if removed:
        log.info(
            "removed %d outputs whose photo left the folder (e.g. %s)", len(removed), removed[0]
        )
    atomic_copy(results.status_path, table)
    return results


def check_chunk_set(tables: Sequence) -> None:
    """Tables named as chunk tables (``status.chunk-K-of-N.tsv``) must be every chunk of one N:
    gathering only some would silently drop photos. Other names are taken as they are."""
    found = [_CHUNK_TABLE.fullmatch(Path(t).name) for t in tables]
    if not all(found):
        return
    counts = {int(m.group(2)) for m in found}
    if len(counts) > 1:
        raise GatherError(
            f"tables of different chunk counts ({', '.join(map(str, sorted(counts)))}): "
            "gather the tables of one run"
        )
    (n,) = counts
    have = sorted(int(m.group(1)) for m in found)
    missing = sorted(set(range(1, n + 1)) - set(have))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (
            f", ... ({len(missing)} in all)" if len(missing) > 10 else ""
        )
        raise GatherError(
            f"missing chunk(s) {shown} of {n}: no {chunk_status_name(missing[0], n)} given "
            "(has its job finished?)"
        )
    twice = [k for k, count in Counter(have).items() if count > 1]
    if twice:
        both = [str(t) for t, m in zip(tables, found) if int(m.group(1)) == twice[0]]
        raise GatherError(f"chunk {twice[0]} of {n} is given twice: {' and '.join(both)}")


def _read_table(path) -> list[dict]:
    header = "\t".join(STATUS_COLUMNS)
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline().rstrip("\n")
        rows = read_tsv(path)
    except FileNotFoundError:
        raise GatherError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GatherError(f"{path}: cannot read it ({e})") from None
    if first != header:
        raise GatherError(f"{path}: not a colorize status table (its first line is not: {header})")
    return rows


def gather_status(tables: Sequence, output) -> list[dict]:
    """The chunks' status tables -> one table of every input at ``output``, in path order (the
    order one run over the folder lists them), byte for byte what that run writes. An input in
    two tables is an error (tables of two runs), as is an incomplete set (``check_chunk_set``)."""
    check_chunk_set(tables)
    rows, seen = [], {}
    for table in tables:
        for row in _read_table(table):
            if row["input"] in seen:
                raise GatherError(f"{row['input']} is in both {seen[row['input']]} and {table}")
            seen[row["input"]] = table
            rows.append(row)
    rows.sort(key=lambda r: PurePath(r["input"]))
    atomic_write_text(output, table_text(rows, STATUS_COLUMNS))
    return rows
