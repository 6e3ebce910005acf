"""Tab-separated tables, the project's one format for manifests, statuses, histories and metrics.

Fields never hold a tab or a newline (whitespace runs become one space), so a row is one line
and ``read_tsv`` needs no quoting rules; floats keep 6 significant digits; None and NaN are
empty fields. Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence


def cell(value) -> str:
    """One value as a TSV field."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return " ".join(str(value).split())


def row_line(values: Iterable) -> str:
    return "\t".join(cell(v) for v in values)


def write_tsv(rows: Sequence[dict], path, columns: Sequence[str] | None = None) -> Path:
    """``rows`` (dicts) under a header of ``columns`` (default: the first row's keys)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    lines = ["\t".join(columns)] + [row_line(row.get(c, "") for c in columns) for row in rows]
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_tsv(path) -> list[dict[str, str]]:
    """A table written by ``write_tsv`` -> rows of strings keyed by column."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]
