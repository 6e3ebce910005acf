"""Does preprocessing scale with cores? Shard builds on 1 vs N cores, on a large real set.

Two ways, each against itself on 1 core in the same run (medians of ``--repeats``):

- ``processes``: the set split into ``--shards`` shards (as the scan does); each shard built by
  ``colorize.preprocess.build_shard`` in a fresh process, at most ``--cores`` at a time (what
  ``snakemake --cores N`` does with the shard jobs, without Snakemake's own overhead).
- ``snakemake``: the real workflow's data stage (``scan`` -> ``shard`` jobs -> ``manifest``) on
  a generated config whose ``dataset.source`` is a local folder of symlinks to the photos,
  run from scratch with ``snakemake --cores 1`` and ``--cores N``. The scan, Snakemake's start
  and one Python start per job are in these numbers.

Besides wall time, the CPU time of the child processes per image, and how many cores they kept
busy on average: on a machine shared with other work, the speed-up can only be as large as
the idle cores allow, while equal CPU ms/img at 1 and N cores shows the work itself splits
without overhead.

    python benchmarks/preprocess_parallel.py --n 4000 --cores 2
    python benchmarks/preprocess_parallel.py --n 4000 --cores 2 --mode snakemake
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_report  # noqa: E402
from preprocess import real_jpegs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _build(args) -> int:
    paths, out = args
    import cv2

    cv2.setNumThreads(1)
    from colorize.preprocess import PreprocessConfig, build_shard

    rows = [{"relpath": p.name, "sha256": "0" * 64} for p in paths]
    tsv = Path(out).with_suffix(".tsv")
    return build_shard(rows, paths, out, tsv, "train", PreprocessConfig(), progress=False)["ok"]


def run_processes(paths, shards: int, cores: int, tmp: Path) -> float:
    parts = [(paths[i::shards], str(tmp / f"train-{i:03d}.h5")) for i in range(shards)]
    t0 = time.perf_counter()
    import multiprocessing as mp

    with ProcessPoolExecutor(
        cores, mp_context=mp.get_context("spawn"), max_tasks_per_child=1
    ) as pool:
        list(pool.map(_build, parts))
    return time.perf_counter() - t0


def run_snakemake(paths, cores: int, work: Path) -> float:
    import yaml

    results = work / "results"
    shutil.rmtree(results, ignore_errors=True)
    shutil.rmtree(work / ".snakemake", ignore_errors=True)
    t0 = time.perf_counter()
    cmd = [
        str(Path(sys.executable).with_name("snakemake")),
        "--snakefile",
        str(REPO / "workflow/Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        "--cores",
        str(cores),
        f"results/{yaml.safe_load((work / 'config.yaml').read_text())['dataset']['name']}/manifest.tsv",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t0


def _children_cpu() -> float:
    """CPU seconds (user + system) of all finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def snakemake_workdir(paths, tmp: Path) -> Path:
    import yaml

    src = tmp / "photos"
    src.mkdir()
    for i, p in enumerate(paths):  # links, not copies: the photos stay in ../shared/data
        (src / f"{i:05d}_{p.name}").symlink_to(p)
    work = tmp / "work"
    work.mkdir()
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["dataset"].update(name="bench", source=str(src))
    config["split"].update(val_fraction=0.1, test_fraction=0.1)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=4000, help="photos (intel_natural 150x150)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--shards", type=int, default=8, help="shards (processes mode)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mode", choices=["processes", "snakemake"], default="processes")
    args = ap.parse_args()
    paths = real_jpegs(args.n)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work = snakemake_workdir(paths, tmp) if args.mode == "snakemake" else None
        times = {1: [], args.cores: []}
        cpu = {1: [], args.cores: []}
        for _ in range(args.repeats):  # interleaved, so load from other users hits both alike
            for cores in times:
                before = _children_cpu()
                if work is not None:
                    times[cores].append(run_snakemake(paths, cores, work))
                else:
                    out = tmp / f"c{cores}"
                    out.mkdir(exist_ok=True)
                    times[cores].append(run_processes(paths, args.shards, cores, out))
                    shutil.rmtree(out)
                cpu[cores].append(_children_cpu() - before)
        base = statistics.median(times[1])
        for cores, ts in times.items():
            med = statistics.median(ts)
            cpu_s = statistics.median(cpu[cores])
            rows.append(
                {
                    "cores": cores,
                    "images": len(paths),
                    "seconds (median)": med,
                    "runs": " ".join(f"{t:.1f}" for t in ts),
                    "img/s": len(paths) / med,
                    "speed-up": base / med,
                    "CPU ms/img": 1000 * cpu_s / len(paths),
                    "cores busy (CPU/wall)": cpu_s / med,
                }
            )
    print_report(
        rows,
        f"preprocess scaling, mode={args.mode}, intel_natural n={len(paths)}; other users share "
        "these cores",
    )


if __name__ == "__main__":
    main()
