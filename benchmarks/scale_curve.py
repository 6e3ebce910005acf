"""How the data stage grows with the photo count: 1x, 10x and 100x the Intel set through Snakemake.

The source is a local folder (the ``dataset.source`` of a generated config) holding ``scale``
copies of the 7,147 ``intel_natural`` photos. Copy k of a photo is the photo with a JPEG comment
segment ("scale_curve copy k") after its start marker: the same pixels and decode work, but its
own sha256, so the scan keeps every copy (a plain hard link would be excluded as a duplicate).
Up to ten such copies are written under the temporary folder (1.2 GB); a larger scale
hard-links them again (copy 10 = copy 0 ...), which only a listing sees.

Per scale, each in a fresh working directory, with the wall time and the peak memory of the
``snakemake`` process: its own peak RSS (``MB``) and, for the data stage, the peak of its whole
tree with the jobs (``tree MB``: the summed PSS, sampled every 50 ms):

- ``-n, nothing built``: ``snakemake -n`` before any job: the DAG up to the scan checkpoint.
- ``data stage``: ``snakemake --cores N results/bench/manifest.tsv`` from scratch (scan -> shard
  jobs -> manifest), with the scan job's and the shard jobs' own seconds from their
  ``benchmark:`` files (the rest is Snakemake: DAG building, job starts, bookkeeping).
- ``-n, complete``: ``snakemake -n`` after it (nothing to do; the DAG after the checkpoint,
  every shard job with its members).
- ``-n, scan done``: the shards and the manifest deleted, the scan table kept: the DAG that
  a run builds after the scan, before its first shard job starts.

Above ``--full-max`` (default 10x) only the two dry runs before and after the scan are run: the
scan table is then written by this script (what the scan writes for distinct photos: each
copy's own relative path, split and shard, the original's size and header, a stand-in sha256)
instead of by a scan of the whole folder, which would take longer than this machine allows.

``--before REV`` runs the same steps with the workflow and library of an older commit (``git
archive``), in the same run, interleaved with the current code.

Snakemake's SLURM plugin asks ``scontrol show config`` at every start; where SLURM is installed
but its controller is down (as on this project's machine) that waits 9 s. The runs here put a
stand-in ``scontrol`` that fails at once first on their PATH, as on a machine without SLURM
(``--keep-slurm-probe`` to keep the real one): the 9 s is a constant of the machine, not of the
data.

    python benchmarks/scale_curve.py                                  # 1x, 10x full; 100x DAG only
    python benchmarks/scale_curve.py --scales 1,10,100 --before 84e405f
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, print_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DATASET = "bench"
UNIQUE_COPIES = 10  # copies with their own bytes; larger scales hard-link these again


def intel_photos() -> list[Path]:
    """The whole Intel set (train and test), 7,147 JPEGs: scale 1."""
    files = sorted((SHARED_DATA / "intel_natural").rglob("*.jpg"))
    if not files:
        sys.exit(
            f"no photos under {SHARED_DATA / 'intel_natural'}: this benchmark needs ../shared/data (see README)"
        )
    return files


def marked(data: bytes, k: int) -> bytes:
    """The JPEG ``data`` with a comment segment naming copy ``k`` after its start marker."""
    text = f"scale_curve copy {k}".encode()
    return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]


def make_pool(photos: list[Path], dest: Path, copies: int) -> list[str]:
    """``copies`` marked copies of every photo under ``dest/copyKKK/``; the relative paths."""
    rels = [p.relative_to(SHARED_DATA / "intel_natural").as_posix() for p in photos]
    for p, rel in zip(photos, rels):
        data = p.read_bytes()
        for k in range(copies):
            out = dest / f"copy{k:03d}" / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(marked(data, k))
    return rels


def make_source(pool: Path, copies: int, rels: list[str], scale: int, dest: Path) -> int:
    """A folder of ``scale`` copies of the set, hard links into the pool of ``copies``; the
    number of files."""
    for k in range(scale):
        for rel in rels:
            out = dest / f"copy{k:03d}" / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            os.link(pool / f"copy{k % copies:03d}" / rel, out)
    return scale * len(rels)


def write_config(work: Path, source: Path, tree: Path) -> dict:
    """The workflow's own config (of the code in ``tree``) with a local-folder source and the
    usual 10/10 % split."""
    import yaml

    config = yaml.safe_load((tree / "config/config.yaml").read_text())
    config["dataset"].update(name=DATASET, source=str(source))
    config["split"].update(val_fraction=0.1, test_fraction=0.1)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def synthetic_scan(
    config: dict, photos: list[Path], rels: list[str], scale: int, tsv: Path
) -> None:
    """The table a scan of ``source`` writes when every copy is a distinct photo, without hashing
    the whole folder: relative path, the original's bytes and header, split and shard from the
    path, a stand-in sha256 (of the path)."""
    from colorize import split as splitmod
    from colorize.imageio import ImageDecodeError, check_size, read_header
    from colorize.manifest import OK, SCAN_COLUMNS
    from colorize.tsv import write_tsv

    originals = []
    for p in photos:
        header = read_header(p)
        try:
            check_size(p, header, max_pixels=config["max_pixels"], min_side=config["min_side"])
            status = OK
        except ImageDecodeError as e:
            status = e.reason
        originals.append((p.stat().st_size, header, status))
    rows = []
    for k in range(scale):
        for rel, (size, header, status) in zip(rels, originals):
            relpath = f"copy{k:03d}/{rel}"
            split, shard = splitmod.assign(
                relpath,
                val_fraction=config["split"]["val_fraction"],
                test_fraction=config["split"]["test_fraction"],
                shards=config["shards"],
                seed=config["split"]["seed"],
            )
            ok = status == OK
            rows.append(
                {
                    "relpath": relpath,
                    "bytes": size + len(marked(b"", k)),
                    "sha256": hashlib.sha256(relpath.encode()).hexdigest(),
                    "width": header.width,
                    "height": header.height,
                    "format": header.format,
                    "split": split if ok else "",
                    "shard": f"{shard:03d}" if ok else "",
                    "status": status,
                }
            )
    rows.sort(key=lambda r: r["relpath"])
    write_tsv(rows, tsv, SCAN_COLUMNS)


class TreeSampler:
    """Memory of a process and all its descendants, sampled every ``interval`` s: the peak of
    their summed PSS (shared pages counted once: a forked child does not double the parent)
    and the peak RSS of the process itself (its VmHWM)."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.tree_kb = self.main_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _children(pid: int) -> list[int]:
        out = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    out += [int(c) for c in fh.read().split()]
        except OSError:
            pass
        return out

    @staticmethod
    def _field_kb(path: str, name: str) -> int:
        try:
            with open(path) as fh:
                for line in fh:
                    if line.startswith(name):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.main_kb = max(self.main_kb, self._field_kb(f"/proc/{self.pid}/status", "VmHWM:"))
            todo, total = [self.pid], 0
            while todo:
                pid = todo.pop()
                total += self._field_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
                todo += self._children(pid)
            self.tree_kb = max(self.tree_kb, total)
            self._stop.wait(self.interval)

    def stop(self) -> tuple[float, float]:
        """(peak MB of the tree, peak RSS MB of the process)."""
        self._stop.set()
        self._thread.join()
        return self.tree_kb / 1024, self.main_kb / 1024


def snakemake(work: Path, tree: Path, env: dict, *args: str, timeout: float | None = None) -> dict:
    """One ``snakemake`` run of the workflow in ``tree`` (from its root, so its own profile
    applies) on ``work``: seconds, peak MB of its process tree, and its output."""
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(tree / "workflow" / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        *args,
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tree,
        start_new_session=True,
    )
    sampler = TreeSampler(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        tree, main = sampler.stop()
        return {
            "seconds": None,
            "tree_mb": tree,
            "main_mb": main,
            "out": f"killed after {timeout:.0f} s",
        }
    seconds = time.perf_counter() - t0
    tree, main = sampler.stop()
    if proc.returncode != 0:
        sys.exit(f"snakemake failed: {' '.join(cmd)}\n{out[-4000:]}")
    return {"seconds": seconds, "tree_mb": tree, "main_mb": main, "out": out}


def job_seconds(work: Path) -> tuple[float, float]:
    """(scan job s, sum of the shard jobs' s) from the rules' ``benchmark:`` files."""
    bench = work / "results" / DATASET / "benchmarks"

    def seconds(path: Path) -> float:
        with open(path) as fh:
            return float(next(csv.DictReader(fh, delimiter="\t"))["s"])

    return seconds(bench / "scan.tsv"), sum(
        seconds(p) for p in sorted((bench / "shard").glob("*.tsv"))
    )


def images_in_shards(work: Path) -> int:
    with open(work / "results" / DATASET / "summary.tsv") as fh:
        return sum(
            int(r["count"]) for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "split"
        )


def before_tree(rev: str, tmp: Path) -> Path:
    """``workflow/``, ``src/colorize``, ``config/``, ``profiles/`` of commit ``rev``, extracted into ``tmp``."""
    dest = tmp / f"before-{rev}"
    dest.mkdir(parents=True)
    tar = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "archive",
            rev,
            "workflow",
            "src/colorize",
            "config",
            "envs",
            "profiles",
        ],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest


def no_slurm_probe(tmp: Path) -> Path:
    """A folder holding an ``scontrol`` that fails at once (see the module's docstring)."""
    stub = tmp / "no-slurm"
    stub.mkdir()
    (stub / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (stub / "scontrol").chmod(0o755)
    return stub


def measure_scale(
    scale: int, n_files: int, source: Path, variant: str, tree: Path, tmp: Path, args, synth
) -> dict:
    """The four measurements of one scale with one version of the code (a row of the table)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if not args.keep_slurm_probe:
        env["PATH"] = os.pathsep.join([str(tmp / "no-slurm"), env["PATH"]])
    if tree != REPO:
        env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), env.get("PYTHONPATH", "")])
    work = tmp / f"work-{scale}x-{variant.split()[0]}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    config = write_config(work, source, tree)
    target = f"results/{DATASET}/manifest.tsv"
    killed = f"> {args.dry_timeout:.0f}"
    row = {"scale": f"{scale}x", "files": n_files, "code": variant}
    fresh = snakemake(work, tree, env, "-n", target, timeout=args.dry_timeout)
    row["-n, nothing built: s"] = fresh["seconds"] or killed
    row["MB"] = fresh["main_mb"]
    full = scale <= args.full_max
    if full:
        stage = snakemake(work, tree, env, "--cores", str(args.cores), target)
        done = snakemake(work, tree, env, "-n", target, timeout=args.dry_timeout)
        if "Nothing to be done" not in done["out"]:
            sys.exit(
                f"{variant} {scale}x: the dry run after the data stage still has jobs:\n{done['out'][-3000:]}"
            )
        scan_s, shards_s = job_seconds(work)
        images = images_in_shards(work)
        res = work / "results" / DATASET
        shutil.rmtree(res / "shards")
        for name in ("manifest.tsv", "summary.tsv"):
            (res / name).unlink()
    else:
        synth(config, work / "results" / DATASET / "scan.tsv")
    after_scan = snakemake(work, tree, env, "-n", target, timeout=args.dry_timeout)
    if after_scan["seconds"] is not None and "shard" not in after_scan["out"]:
        sys.exit(
            f"{variant} {scale}x: no shard job planned after the scan:\n{after_scan['out'][-3000:]}"
        )
    row["-n, scan done: s"] = after_scan["seconds"] or killed
    row["MB "] = after_scan["main_mb"]
    stage_cols = (
        "data stage: s",
        "tree MB",
        "snakemake MB",
        "scan job s",
        "shard jobs s (sum)",
        "shard ms/img",
        "images in shards",
        "-n, complete: s",
        "MB  ",
    )  # print_report's columns are the keys: the MB columns differ in spaces
    if full:
        row.update(
            zip(
                stage_cols,
                (
                    stage["seconds"],
                    stage["tree_mb"],
                    stage["main_mb"],
                    scan_s,
                    shards_s,
                    1000 * shards_s / max(images, 1),
                    images,
                    done["seconds"],
                    done["main_mb"],
                ),
            )
        )
    else:
        row.update(dict.fromkeys(stage_cols, "-"))
    shutil.rmtree(work, ignore_errors=True)
    print(f"  {variant} {scale}x done: {row}", file=sys.stderr, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scales", default="1,10,100", help="copies of the Intel set (7,147 photos each)"
    )
    ap.add_argument(
        "--full-max", type=int, default=10, help="largest scale that runs the whole data stage"
    )
    ap.add_argument("--cores", type=int, default=2, help="snakemake --cores for the data stage")
    ap.add_argument("--before", default=None, help="git revision to run beside the current code")
    ap.add_argument(
        "--dry-timeout", type=float, default=600, help="seconds after which a dry run is stopped"
    )
    ap.add_argument(
        "--keep-slurm-probe", action="store_true", help="do not shadow scontrol (see above)"
    )
    ap.add_argument(
        "--tmp",
        default=None,
        help="folder for the photo copies and runs (default: a new temporary one)",
    )
    args = ap.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    photos = intel_photos()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        no_slurm_probe(tmp)
        t0 = time.perf_counter()
        copies = min(UNIQUE_COPIES, max(scales))
        rels = make_pool(photos, tmp / "pool", copies)
        print(
            f"  pool of {copies} marked copies: {time.perf_counter() - t0:.0f} s", file=sys.stderr
        )
        variants = [("now", REPO)] + (
            [(f"before {args.before}", before_tree(args.before, tmp))] if args.before else []
        )
        rows = []
        for scale in scales:
            source = tmp / f"photos-{scale}x"
            n_files = make_source(tmp / "pool", copies, rels, scale, source)

            def synth(config, tsv, scale=scale):
                return synthetic_scan(config, photos, rels, scale, tsv)

            for name, tree in variants:
                rows.append(measure_scale(scale, n_files, source, name, tree, tmp, args, synth))
            shutil.rmtree(source)
    print_report(
        rows,
        f"data stage vs photo count (Intel set = {len(photos):,} photos; shards 8/2/2; "
        f"--cores {args.cores})",
    )


if __name__ == "__main__":
    main()
