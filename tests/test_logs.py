"""colorize.logs: what a script's log file and the console get, and that an error ending a
Snakemake job is written to the job's log (a real Snakemake run)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from colorize.logs import setup_logging, snakemake_log
from helpers import Bag, kept_logging

# "2026-01-31 12:00:00,123 colorize.train INFO: the message"
LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<name>\S+) (?P<level>[A-Z]+): (?P<msg>.*)"
)


@pytest.fixture
def restored_logging():
    with kept_logging():
        yield
    logging.captureWarnings(False)


def records(path: Path) -> list[tuple[str, str, str]]:
    """(logger, level, message) of each record; a line not in the format continues the message
    before it (a warning's source line, a traceback). The file must start with a record."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := LINE.fullmatch(line):
            found.append([m["name"], m["level"], m["msg"]])
        else:
            assert found, f"{path} does not start with a log record: {line!r}"
            found[-1][2] += "\n" + line
    return [tuple(r) for r in found]


def test_the_log_file_and_the_console_get_each_record_in_one_format(
    tmp_path, capfd, restored_logging
):
    log_file = tmp_path / "job.log"
    setup_logging(log_file)
    logging.getLogger("colorize.train").info("epoch %d of %d", 1, 3)
    logging.getLogger("colorize.train").debug("not at the default level")
    logging.getLogger("colorize.infer").warning("a bad photo")
    assert records(log_file) == [
        ("colorize.train", "INFO", "epoch 1 of 3"),
        ("colorize.infer", "WARNING", "a bad photo"),
    ]
    console = capfd.readouterr().err.splitlines()
    assert [LINE.fullmatch(line)["msg"] for line in console] == ["epoch 1 of 3", "a bad photo"]


def test_warnings_are_logged_and_a_new_set_up_replaces_the_old(tmp_path, restored_logging):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    second.write_text("a previous attempt's log\n")
    setup_logging(first)
    logging.getLogger("colorize").info("to the first")
    setup_logging(second, level=logging.DEBUG)  # a log file is started afresh (mode "w")
    logging.getLogger("colorize").debug("to the second")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated option", UserWarning, stacklevel=1)
    assert records(first) == [("colorize", "INFO", "to the first")]  # nothing after the switch
    debug, (name, level, msg) = records(second)  # the previous attempt's line is gone
    assert debug == ("colorize", "DEBUG", "to the second")
    assert (name, level) == ("py.warnings", "WARNING")
    assert msg.startswith(f"{__file__}:") and "UserWarning: deprecated option\n" in msg


def test_without_a_log_file_only_the_console(tmp_path, capfd, restored_logging, monkeypatch):
    monkeypatch.chdir(tmp_path)
    snakemake_log(Bag(log=[]))  # a rule without log:
    logging.getLogger("colorize").info("only here")
    assert capfd.readouterr().err.rstrip().endswith("colorize INFO: only here")
    assert list(tmp_path.iterdir()) == []


SNAKEFILE = """
rule fails:
    output: "out.txt"
    log: "logs/fails.log"
    script: "fails.py"
"""
FAILING_SCRIPT = """
import logging
from colorize.logs import snakemake_log

snakemake_log(snakemake)
logging.getLogger("colorize.fetch").info("reading %s", snakemake.output[0])
raise ValueError("config: dataset.source 'nowhere' is not an existing folder")
"""


@pytest.mark.slow
def test_an_error_that_ends_a_snakemake_job_is_in_its_log(tmp_path):
    (tmp_path / "Snakefile").write_text(textwrap.dedent(SNAKEFILE))
    (tmp_path / "fails.py").write_text(FAILING_SCRIPT)
    snakemake = Path(sys.executable).parent / "snakemake"
    command = [str(snakemake), "--cores", "1", "--snakefile", str(tmp_path / "Snakefile")]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    fetch, (name, level, msg) = records(tmp_path / "logs/fails.log")
    assert fetch == ("colorize.fetch", "INFO", "reading out.txt")  # the script's own record
    error = "ValueError: config: dataset.source 'nowhere' is not an existing folder"
    assert (name, level) == ("colorize", "CRITICAL")
    summary, traceback, *frames, last = msg.split("\n")
    assert summary == error and last == error
    assert traceback == "Traceback (most recent call last):"
    assert any('fails.py", line' in frame for frame in frames)
    assert not (tmp_path / "out.txt").exists()
