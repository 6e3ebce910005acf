"""Are two workflow runs the same? Compares two results/ trees file by file (issue 11's check that
a refactor changed nothing), skipping logs/ and benchmarks/ (timings by nature):

- bytes equal: nothing to say;
- HDF5 shards: every dataset and attribute equal;
- checkpoints: weights equal and every other key equal, the history compared without its
  timing columns (``seconds``, ``images_per_s``);
- TSV tables: which columns differ.

    python benchmarks/compare_runs.py /tmp/base/results /tmp/new/results
"""

from __future__ import annotations

import sys
from pathlib import Path

TIMINGS = ("seconds", "images_per_s", "train_seconds")


def compare(a: Path, b: Path) -> list[str]:
    import h5py
    import numpy as np
    import torch

    lines = []
    for p in sorted(a.rglob("*")):
        rel = p.relative_to(a)
        if not p.is_file() or rel.parts[1:2] in (("logs",), ("benchmarks",)):
            continue
        q = b / rel
        if not q.is_file():
            lines.append(f"{rel}: missing in {b}")
        elif p.read_bytes() == q.read_bytes():
            continue
        elif p.suffix == ".h5":
            with h5py.File(p) as f, h5py.File(q) as g:
                same = set(f) == set(g) and all(np.array_equal(f[k][...], g[k][...]) for k in f)
                same = same and dict(f.attrs) == dict(g.attrs)
            lines.append(f"{rel}: {'datasets and attributes equal' if same else 'SHARDS DIFFER'}")
        elif p.suffix == ".pt":
            x, y = torch.load(p, weights_only=True), torch.load(q, weights_only=True)
            weights = (
                all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])
                and x["model"].keys() == y["model"].keys()
            )

            def strip(rows):
                return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows or []]

            other = [
                k
                for k in x
                if k not in ("model", "optimizer", "history", "card") and x[k] != y.get(k)
            ]
            history = strip(x.get("history")) == strip(y.get("history"))
            lines.append(
                f"{rel}: weights {'equal' if weights else 'DIFFER'}, other keys differing {other}, "
                f"history without timings {'equal' if history else 'DIFFERS'}"
            )
        elif p.suffix == ".tsv":
            ra = [r.split("\t") for r in p.read_text().splitlines()]
            rb = [r.split("\t") for r in q.read_text().splitlines()]
            cols = sorted(
                {
                    ra[0][i]
                    for r1, r2 in zip(ra, rb)
                    for i, (c1, c2) in enumerate(zip(r1, r2))
                    if c1 != c2
                }
            )
            lines.append(
                f"{rel}: columns differing {cols}"
                + ("" if len(ra) == len(rb) else ", ROW COUNT DIFFERS")
            )
        else:
            lines.append(f"{rel}: BYTES DIFFER")
    return lines


if __name__ == "__main__":
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    n = sum(1 for p in a.rglob("*") if p.is_file())
    out = compare(a, b)
    print(f"{n} files under {a}; {len(out)} not byte-identical (logs/ and benchmarks/ skipped):")
    print("\n".join(out) or "all byte-identical")
