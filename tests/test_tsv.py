"""colorize.tsv: any string, file names included, round-trips through a table cell and a TSV file."""

from __future__ import annotations

import pytest

from colorize.tsv import cell, read_tsv, unescape, write_tsv
from helpers import ODD_NAMES


@pytest.mark.parametrize("name", ODD_NAMES + ["", "a\\", "\\\\n", "x\r\ny"])
def test_tsv_cells_round_trip_any_file_name(name, tmp_path):
    assert unescape(cell(name)) == name
    assert "\t" not in cell(name) and "\n" not in cell(name)
    write_tsv([{"relpath": name, "status": "ok"}], tmp_path / "t.tsv")
    assert read_tsv(tmp_path / "t.tsv") == [{"relpath": name, "status": "ok"}]
