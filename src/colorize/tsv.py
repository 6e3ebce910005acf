"""Tab-separated tables, the project's one format for manifests, statuses, histories and metrics.

A row is one line. Any string round-trips exactly, file names included: a backslash, tab,
newline or carriage return inside a field is escaped as ``\\\\``, ``\\t``, ``\\n``, ``\\r``
(the convention of PostgreSQL's COPY and of ``cut``-friendly TSV), and runs of spaces, leading
and trailing spaces are kept as they are. A name that is not valid UTF-8 (bytes a POSIX file
system allows; Python holds them as surrogates) is written with its bad bytes as ``\\xNN``, so
the table stays UTF-8; such a name is shown, not round-tripped. Floats keep 6 significant
digits; None and NaN are empty fields. Files are written atomically (temporary file, then
rename); a failed write leaves the previous file and no temporary behind.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .files import atomic_write_text

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_ESCAPE_RE = re.compile(r"[\\\t\n\r]")
_UNESCAPE_RE = re.compile(r"\\[\\tnr]")


def printable_name(name: str) -> str:
    """A name as valid UTF-8 text: undecodable bytes (surrogate-escaped) become ``\\xNN``."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_utf8_name(name: str) -> bool:
    """False for a file name holding bytes that are not UTF-8 (Python's surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def cell(value) -> str:
    """One value as a TSV field (escaped; ``unescape`` reverses it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = printable_name(str(value))
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text)


def unescape(field: str) -> str:
    """A field as ``cell`` wrote it -> the original string."""
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES[m.group()], field) if "\\" in field else field


def row_line(values: Iterable) -> str:
    """One TSV line (no newline) of ``values``, each escaped by ``cell``."""
    return "\t".join(cell(v) for v in values)


def table_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A whole TSV table: the header of ``columns``, then one line per row dict."""
    lines = ["\t".join(columns)] + [row_line(row.get(c, "") for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def write_tsv(rows: Sequence[dict], path, columns: Sequence[str] | None = None) -> Path:
    """``rows`` (dicts) under a header of ``columns`` (default: the first row's keys)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    return atomic_write_text(path, table_text(rows, columns))


class TsvStream:
    """A table written a row at a time, flushed after each (a killed writer leaves the rows so
    far; ``read_tsv`` drops a last line it cut short). A context manager."""

    def __init__(self, path, columns: Sequence[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = tuple(columns)
        self._fh = open(self.path, "w", encoding="utf-8")
        self._write("\t".join(self.columns))

    def _write(self, line: str) -> None:
        self._fh.write(line + "\n")
        self._fh.flush()

    def add(self, values: Iterable) -> None:
        """One row: its values in column order."""
        self._write(row_line(values))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_line(line: str) -> list[str]:
    """The unescaped fields of one TSV line (without its newline)."""
    return [unescape(f) for f in line.split("\t")]


def read_tsv(path) -> list[dict[str, str]]:
    """A table written by ``write_tsv`` -> rows of strings keyed by column. A last line cut
    short (a writer killed mid-line) is dropped, as is any line with too few fields."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if not lines or not lines[0]:
        return []
    header = lines[0].split("\t")
    body = lines[1:]
    if body and body[-1] == "":
        body = body[:-1]
    elif body and not text.endswith("\n"):
        body = body[:-1]  # unterminated: the writer stopped mid-line
    rows = []
    for line in body:
        fields = parse_line(line)
        if len(fields) == len(header):
            rows.append(dict(zip(header, fields)))
    return rows
