"""What happened to each file of a colorize run: the status table, and resuming from it.

``colorize_files`` returns one ``Result`` per input and journals them to a TSV of
``STATUS_COLUMNS`` as the run goes (one line per finished file, so a killed run leaves what it
did), rewritten complete, in input order, at the end. Each row records the input's size and
modification time (``source``) and a fingerprint of the model and options (``settings``):
with ``resume``, a file whose row says ok, whose output is still there and whose source and
settings are unchanged is not done again (``previous_status``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .files import atomic_write_text
from .runtime import head_options, weights_digest
from .tsv import TsvStream, read_tsv, table_text

log = logging.getLogger("colorize.infer")


@dataclass
class Result:
    """What happened to one input file."""

    input: str
    output: str | None  # None when it failed
    status: (
        str  # "ok", "failed" (tried, could not), "skipped" (never opened: the listing refused it)
    )
    reason: str = ""  # why it failed (empty when ok)
    width: int = 0
    height: int = 0
    source: str = ""  # the input's "bytes:mtime_ns" when it was read
    settings: str = ""  # fingerprint of the model and options that made the output
    resumed: bool = False  # done by an earlier run (--resume), not again
    errno: int | None = field(default=None, repr=False)  # of a failed write

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict:
        return {"input": self.input, "status": self.status, "output": self.output or "",
                "width": self.width or "", "height": self.height or "", "reason": self.reason,
                "source": self.source, "settings": self.settings}  # fmt: skip


STATUS_COLUMNS = ("input", "status", "output", "width", "height", "reason", "source", "settings")
# Write errors after which no further output can succeed: the run stops cleanly.
FATAL_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class Results(list):
    """``colorize_files``' one ``Result`` per input, plus where the status table went."""

    status_path: Path | None = None
    resumed: int = 0  # done by an earlier run and skipped
    stopped: str | None = None  # why the run stopped before the end (a full or read-only disk)


def source_stamp(path: Path) -> str:
    """An input's identity for --resume: its size and modification time."""
    try:
        st = Path(path).stat()
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


# 2: the gamut table of issue 13 (out-of-gamut colours up to 16 levels closer to exact); 3: the numba
# Lab -> RGB loop (the sRGB curve rounded exactly: 0.03 % of pixels one level off the OpenCV conversion)
INFERENCE_VERSION = 3


def run_settings(model, **options) -> str:
    """A short fingerprint of the model's weights and decoding and of the options that shape
    an output: a changed model or option makes every earlier output stale for --resume, and so
    does a new ``INFERENCE_VERSION`` (the code's own way of making an output). A checkpoint and
    its ONNX export have the same (``runtime.weights_digest``, ``runtime.head_options``)."""
    options = dict(options, **head_options(model), inference_version=INFERENCE_VERSION)
    h = hashlib.sha256(weights_digest(model).encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class StatusJournal:
    """The status table, appended one row per finished file (a killed run leaves what it did)
    and rewritten whole at the end. Write errors never stop the run: the final table goes, in
    that order, to ``path`` atomically, to ``path`` in place (a full disk may have room for a
    rewrite but not for a second copy), or to the temporary folder."""

    def __init__(self, path: Path):
        self.path = path
        self._stream: TsvStream | None = None
        try:
            self._stream = TsvStream(path, STATUS_COLUMNS)
        except OSError as e:
            log.warning("cannot write the status table %s as the run goes: %s", path, e)
            self._close()

    def add(self, result: Result) -> None:
        if self._stream is None:
            return
        try:
            self._stream.add(result.row().values())
        except OSError as e:
            log.warning("cannot append to the status table %s: %s", self.path, e)
            self._close()

    def _close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass
            self._stream = None

    def finish(self, results: Sequence[Result]) -> Path:
        self._close()
        text = table_text([r.row() for r in results], STATUS_COLUMNS)
        try:
            return atomic_write_text(self.path, text)
        except OSError as first:
            try:
                with open(self.path, "w", encoding="utf-8") as fh:
                    fh.write(text)
                return self.path
            except OSError:
                fallback = Path(tempfile.gettempdir()) / f"colorize-status-{os.getpid()}.tsv"
                fallback.write_text(text, encoding="utf-8")
                log.error(
                    "could not write the status table to %s (%s); it is in %s",
                    self.path,
                    first.strerror or first,
                    fallback,
                )
                return fallback


def previous_status(path) -> dict[str, dict]:
    """The ok rows of an earlier run's status table (input -> row), for --resume."""
    try:
        rows = read_tsv(path)
    except (OSError, UnicodeDecodeError):
        return {}
    return {r["input"]: r for r in rows if r.get("status") == "ok" and r.get("settings")}
