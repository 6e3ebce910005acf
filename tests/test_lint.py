"""The code is clean under the project's linters and formatters, as configured in pyproject.toml.

`snakemake --lint`; ruff (lint and format) over every Python file; snakefmt over the Snakefile
and the rules. The same tools, at the same pins, run at commit time (.pre-commit-config.yaml).
"""

import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent
# Every folder holding the project's Python: ruff must see files in each (a stray exclude in
# pyproject.toml would otherwise pass the checks below by checking nothing).
PYTHON_FOLDERS = ("src/colorize", "tests", "benchmarks", "workflow/scripts")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def snakefiles() -> list[str]:
    rules = sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow/rules").glob("*.smk"))
    return ["workflow/Snakefile", *rules]


def test_snakemake_lint_clean():
    proc = run("snakemake", "--lint")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in out, out


def test_ruff_sees_every_python_folder():
    proc = run("ruff", "check", "--show-files", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = {Path(line).resolve() for line in proc.stdout.splitlines() if line.endswith(".py")}
    for folder in PYTHON_FOLDERS:
        expected = {p.resolve() for p in (REPO / folder).glob("*.py")}
        assert expected and expected <= seen, f"ruff does not check {sorted(expected - seen)}"


def test_ruff_check_clean():
    proc = run("ruff", "check", "--no-fix", "--output-format", "concise", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_clean():
    proc = run("ruff", "format", "--check", "--diff", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_check():
    proc = run("snakefmt", "--check", "--compact-diff", *snakefiles())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_formatters_share_one_line_length():
    tools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    assert tools["ruff"]["line-length"] == tools["snakefmt"]["line_length"] == 100


def test_pre_commit_runs_the_same_checks():
    proc = run("pre-commit", "validate-config", ".pre-commit-config.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import yaml

    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "snakefmt"} <= set(hooks)
    for hook in hooks.values():
        assert hook["language"] == "system", hook  # the pinned tools of the venv, no download
        assert hook["entry"].split()[0].startswith(".venv/bin/"), hook
