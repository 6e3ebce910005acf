"""The library's layout: every module in the table of docs/development.md, imports reading downward,
light modules light."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "src" / "colorize"


def readme_order() -> list[str]:
    """The modules of the layout table (docs/development.md), lowest layer first (a row may name
    several)."""
    text = (ROOT / "docs/development.md").read_text(encoding="utf-8")
    table = text[text.index("| module | the one concept it owns |") :]
    table = table[: table.index("\n\n")]
    order = []
    for line in table.splitlines()[2:]:
        order += re.findall(r"`([a-z_]+)`", line.split("|")[1])
    return order


def library_imports(path: Path) -> set[str]:
    """The colorize modules a file imports, at the top or inside functions."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            deps.update(
                [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("colorize."):
            deps.add(node.module.split(".")[1])
    deps.discard("__version__")
    return deps


def test_every_module_is_in_the_layout_table_once():
    modules = sorted(p.stem for p in LIBRARY.glob("*.py") if p.stem not in ("__init__", "__main__"))
    order = readme_order()
    assert sorted(order) == modules, "docs/development.md's layout table and src/colorize/ disagree"
    assert len(order) == len(set(order))


def test_imports_read_downward():
    """A module imports only modules listed above it in the layout table: no cycles, no hubs."""
    rank = {m: i for i, m in enumerate(readme_order())}
    upward = {
        m: sorted(d for d in library_imports(LIBRARY / f"{m}.py") if rank[d] >= rank[m])
        for m in rank
    }
    assert {m: d for m, d in upward.items() if d} == {}


def loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_training_does_not_import_inference_and_metrics_stay_light():
    after_train = loaded_after("colorize.train")
    assert (
        not {"colorize.infer", "colorize.predict", "colorize.evaluate", "colorize.status"}
        & after_train
    )
    after_metrics = loaded_after("colorize.metrics")
    assert (
        "torch" not in after_metrics
        and "skimage" not in after_metrics
        and "h5py" not in after_metrics
    )
    assert "colorize.metrics" not in loaded_after("colorize.plots")
