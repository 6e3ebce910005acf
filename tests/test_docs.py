"""The documentation stays true: the README is short, every relative link (and #anchor) in the
README and docs/ resolves, every command block marked ``<!-- runnable -->`` still parses, and
the user-facing pages hold no development history (issue numbers).

A runnable block's commands are checked without doing the work: ``colorize ...`` is parsed by
the real command line's parser (``--help`` is run), ``snakemake ...`` is dry-run (``-n``) in a
copy of the workflow beside stand-in photo folders, ``python -m ... --help`` is run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from workflow_utils import standin_repo

README_MAX_LINES = 250
PAGES = sorted(
    [REPO / "README.md", REPO / "CHANGELOG.md", REPO / "config/README.md"]
    + list((REPO / "docs").glob("*.md"))
)
RUNNABLE = "<!-- runnable -->"
BIN = Path(sys.executable).parent


def without_code(text: str) -> str:
    """Markdown text without fenced blocks and inline code (links inside them are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for m in re.finditer(r"^#{1,6} +(.+?) *#* *$", text, re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    targets = re.findall(
        r"!?\[[^\]]*\]\(([^)\s]+)(?: \"[^\"]*\")?\)", without_code(page.read_text())
    )
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # no http:, mailto:


def test_the_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    text = "\n".join(lines)
    assert "<!-- test-command -->" in text  # .ci/run reads the block after it
    for page in (REPO / "docs").glob("*.md"):  # every page one click away
        assert f"(docs/{page.name}" in text, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_user_pages_hold_no_development_history(page):
    text = page.read_text(encoding="utf-8")
    assert re.findall(r".{0,40}\bissues? #?\d+.{0,20}", text, re.I) == []


def runnable_blocks() -> list[tuple[str, int, str]]:
    """(page, line, block) of every fenced block right after a ``<!-- runnable -->`` line."""
    blocks = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip() == RUNNABLE:
                assert lines[i + 1].startswith("```"), f"{page}:{i + 1}: no code block after it"
                end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
                blocks.append((str(page.relative_to(REPO)), i + 2, "\n".join(lines[i + 2 : end])))
    return blocks


def commands(block: str) -> list[list[str]]:
    """A block's commands as argument lists (continued lines joined, comments dropped)."""
    return [
        w
        for line in block.replace("\\\n", " ").splitlines()
        if (w := shlex.split(line, comments=True))
    ]


def test_there_are_runnable_blocks():
    pages = {page for page, _, _ in runnable_blocks()}
    assert "README.md" in pages and len(runnable_blocks()) >= 4


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return standin_repo(tmp_path_factory.mktemp("docs"))


@pytest.mark.slow
@pytest.mark.parametrize("where,line,block", runnable_blocks(), ids=lambda v: str(v)[:40])
def test_runnable_blocks_still_parse(where, line, block, standin):
    from colorize.cli import build_parser

    env = dict(os.environ)
    for words in commands(block):
        program, args = Path(words[0]).name, words[1:]
        if program == "export":
            env.update(a.split("=", 1) for a in args)
            continue
        assert program in ("colorize", "snakemake", "python"), f"{where}:{line}: {words}"
        if program == "colorize" and not {"--help", "--version"} & set(args):
            try:
                build_parser().parse_args(args)
            except SystemExit as e:
                raise AssertionError(f"{where}:{line}: colorize does not take {args}") from e
            continue
        if program == "snakemake":
            cmd = [str(BIN / "snakemake"), *args, "--dry-run"]
        else:
            assert program != "python" or "--help" in args, f"{where}:{line}: {words}"
            cmd = [str(BIN / program), *args]
        proc = subprocess.run(
            cmd, cwd=standin, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"{where}:{line}: {shlex.join(words)}\n{proc.stderr[-3000:]}"
