"""Training data path on this machine's CPU: loader throughput from HDF5 shards vs the model-only
step rate, i.e. does training ever wait on data?

Loader (images/s, one epoch consumed and dropped, the first batch, which carries worker start-up,
not timed; median of ``--repeats`` epochs):
- ``stream w0`` / ``stream w2``: ``ShardDataset`` through ``iterate_batches`` with 0 or 2
  DataLoader workers (whole shards read, shuffled, batches cut in the workers);
- ``in-memory``: ``InMemoryDataset.batches`` (all shards loaded once, float16);
each at the stored 256x256 and with random 128x128 crops (+ flips), as training uses them.

Model-only: the training step (forward, MSE, backward, Adam, ``loss.item()``) on synthetic
tensors, fp32 on the CPU, for ``seed_ae`` and ``unet`` (32 channels, depth 4, the default).

``--before REV`` adds the loader rows of an older commit (run from ``git archive`` of REV).

    python benchmarks/training_data.py
    python benchmarks/training_data.py --before ed2a98c
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def loader_rows(shards: list[Path], batch: int, repeats: int, label: str) -> list[dict]:
    from _train_bench import timed_loader
    from colorize.data import InMemoryDataset, ShardDataset, iterate_batches

    rows = []
    for crop in (None, 128):
        configs = [
            ("stream w0", lambda crop=crop: ShardDataset(shards, crop_size=crop, seed=0), 0),
            ("stream w2", lambda crop=crop: ShardDataset(shards, crop_size=crop, seed=0), 2),
            ("in-memory", lambda crop=crop: InMemoryDataset(shards, crop_size=crop, seed=0), 0),
        ]
        for name, make, workers in configs:
            ds = make()
            runs = []
            for epoch in range(repeats):
                ds.set_epoch(epoch)
                runs.append(timed_loader(iterate_batches(ds, batch, num_workers=workers)))
            med = statistics.median(r["img/s"] for r in runs)
            rows.append(
                {
                    "code": label,
                    "what": f"loader {name}",
                    "sample": f"{crop or 256}px",
                    "batch": batch,
                    "img/s": med,
                    "epoch start-up s": statistics.median(r["startup_s"] for r in runs),
                }
            )
    return rows


def model_rows(batch: int, size_crop: list[int], steps: int) -> list[dict]:
    import torch

    from _train_bench import Stepper, timed_model_only

    rows = []
    for arch in ("seed_ae", "unet"):
        step = Stepper(arch, torch.device("cpu"), "fp32")
        for s in size_crop:
            r = timed_model_only(step, batch, s, seconds=0, min_steps=steps, read_loss=True)
            rows.append(
                {
                    "code": "now",
                    "what": f"model-only {arch} fp32",
                    "sample": f"{s}px",
                    "batch": batch,
                    "img/s": r["img/s"],
                    "epoch start-up s": "-",
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1024, help="images in the shards")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--model-batch", type=int, default=8, help="batch for the model-only steps")
    ap.add_argument("--model-steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", default=None, help="git revision to compare the loader with")
    ap.add_argument(
        "--loader-only", nargs=2, metavar=("SHARD_DIR", "LABEL"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if args.loader_only:
        shards = sorted(Path(args.loader_only[0]).glob("train-*.h5"))
        print(json.dumps(loader_rows(shards, args.batch, args.repeats, args.loader_only[1])))
        return
    from _train_bench import make_shards

    with tempfile.TemporaryDirectory() as tmp:
        shards = make_shards(Path(tmp) / "shards", args.n, 256, args.shards)
        rows = []
        if args.before:
            src = Path(tmp) / "before"
            src.mkdir()
            tar = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.before, "src/colorize"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=tar, check=True)
            env = dict(os.environ, PYTHONPATH=str(src / "src"))
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--loader-only",
                    str(Path(tmp) / "shards"),
                    f"before ({args.before})",
                    "--batch",
                    str(args.batch),
                    "--repeats",
                    str(args.repeats),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            rows += json.loads(proc.stdout.strip().splitlines()[-1])
        rows += loader_rows(shards, args.batch, args.repeats, "now")
    rows += model_rows(args.model_batch, [256, 128], args.model_steps)
    print(f"machine: {machine()}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.n} images of 256x256 in "
        f"{args.shards} shards"
    )
    print_table(rows, "training data path on CPU: loader vs model-only (img/s)")


if __name__ == "__main__":
    main()
