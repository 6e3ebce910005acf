"""Stage 1 entry point: put a data set's raw files into one folder, whatever the source."""

from __future__ import annotations

import logging
from pathlib import Path

from .archive import DEFAULT_MAX_RATIO
from .manifest import copy_builtin
from .tsv import write_tsv

log = logging.getLogger("colorize.acquire")


def fetch_source(
    source: str,
    raw_dir,
    log_tsv,
    *,
    sha256: str | None = None,
    progress: bool = True,
    archive_limits: dict | None = None,
) -> None:
    """``builtin`` -> scikit-image's photos; ``http(s)://...`` -> download (+ safe extraction).

    ``log_tsv`` records what was fetched: one row per file or URL, with its status.
    ``archive_limits``: the config's ``dataset.archive`` (``max_ratio``, ``max_bytes``).
    """
    limits = archive_limits or {}
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    if source == "builtin":
        rows = [
            {"source": "builtin", "relpath": p.name, "status": "ok"} for p in copy_builtin(raw_dir)
        ]
    elif source.startswith(("http://", "https://")):
        from .download import acquire

        rows = [
            _record_row(r)
            for r in acquire(
                source,
                raw_dir,
                sha256=sha256,
                progress=progress,
                max_total_bytes=limits.get("max_bytes"),
                max_ratio=limits.get("max_ratio", DEFAULT_MAX_RATIO),
            )
        ]
    else:
        raise ValueError(f"dataset.source {source!r}: not 'builtin' or an http(s):// URL")
    write_tsv(rows, log_tsv, ["source", "relpath", "status"])
    log.info("fetched %d files into %s", sum(r["status"] == "ok" for r in rows), raw_dir)


def _record_row(rec) -> dict:
    """Adapt one record returned by ``download.acquire`` to a log row."""
    if isinstance(rec, dict):
        return {
            "source": rec.get("url", ""),
            "relpath": rec.get("relpath", ""),
            "status": rec.get("status", "ok"),
        }
    return {
        "source": getattr(rec, "url", ""),
        "relpath": str(getattr(rec, "relpath", getattr(rec, "path", ""))),
        "status": getattr(rec, "status", None) or (getattr(rec, "error", None) or "ok"),
    }
