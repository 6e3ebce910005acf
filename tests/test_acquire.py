"""colorize.acquire: stage 1's fetch_source passes the configured archive limits on to the extraction."""

from __future__ import annotations

import pytest

from colorize.archive import UnsafeArchiveError
from helpers import MiB, zeros_zip


def test_fetch_source_passes_the_configured_archive_limits(tmp_path, http_server):
    from colorize.acquire import fetch_source

    archive = zeros_zip(tmp_path / "set.zip", 4 * MiB)
    url = http_server.add_file("set.zip", archive.read_bytes())
    with pytest.raises(UnsafeArchiveError, match="max_ratio"):
        fetch_source(url, tmp_path / "raw", tmp_path / "log.tsv", progress=False)
    assert not any((tmp_path / "raw").iterdir())
    fetch_source(
        url,
        tmp_path / "raw",
        tmp_path / "log.tsv",
        progress=False,
        archive_limits={"max_ratio": 10_000, "max_bytes": 8 * MiB},
    )
    assert (tmp_path / "raw" / "zeros.bin").stat().st_size == 4 * MiB
