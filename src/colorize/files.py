"""Files: the project's one atomic-write scheme, and the one file hash (sha256).

Writing files so that a reader never sees half of one:

Every output is written to a temporary name in the same folder, ``.<hash of the name>.tmp<pid><suffix>``
(hidden, unique per process, ending in the real extension so that writers choosing a format by
extension pick the right one), then renamed over the final name. On any failure the temporary
file is removed and the error raised: the previous file, if any, is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path


def temp_path(path) -> Path:
    """The temporary name ``path`` is written under before the rename."""
    path = Path(path)
    # short whatever the name's length (a name of up to 255 bytes must stay writable): a hash of
    # the name keeps it unique per file, the pid unique per process
    digest = hashlib.sha256(path.name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return path.with_name(f".{digest}.tmp{os.getpid()}{path.suffix[:16]}")


# ``.<12 hex>.tmp<pid><suffix>``, and the older ``.<stem>.tmp<pid><suffix>``
_TEMP_NAME = re.compile(r"^\..+\.tmp(\d+)(\.[^.]*)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder) -> list[Path]:
    """Remove, below ``folder``, the temporaries of this naming scheme left by a process that no
    longer runs (kill -9 during a write); a live process's temporary is left alone."""
    removed = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            m = _TEMP_NAME.match(name)
            if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
                path = Path(dirpath, name)
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(path, mkdir: bool = True) -> Iterator[Path]:
    """``with atomic_path(out) as tmp: write(tmp)``: ``out`` appears, complete, when the block ends."""
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path, data) -> Path:
    """Write any bytes-like ``data`` (bytes, a numpy buffer: no copy) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` so that it is never half-written."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_copy(src, dst) -> Path:
    """Copy ``src`` to ``dst`` so that ``dst`` is never half-copied."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def atomic_torch_save(obj, path) -> Path:
    """``torch.save`` of ``obj`` to ``path`` so that a checkpoint is never half-written."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def sha256_file(path, bufsize: int = 1 << 20) -> str:
    """The hex sha256 of a file's bytes, read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()
