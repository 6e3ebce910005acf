"""Which HDF5 compression for the Lab shards: write cost, whole-shard read cost, bytes per image.

Uses real photos (../shared/data/intel_natural) converted to Lab at --size, so the numbers
reflect photo statistics, not noise.

    python benchmarks/shard_compression.py --n 200 --size 256
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_table  # noqa: E402
from preprocess import real_jpegs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()

    from colorize.imageio import ImageDecodeError
    from colorize.preprocess import PreprocessConfig, prepare_image
    from colorize.shards import COMPRESSIONS, ShardWriter, read_shard

    cfg = PreprocessConfig(image_size=args.size)
    labs = []
    for p in real_jpegs(args.n):
        try:
            labs.append(prepare_image(p, cfg))
        except ImageDecodeError:
            pass
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for comp in COMPRESSIONS:
            path = Path(tmp) / f"{comp}.h5"
            t0 = time.perf_counter()
            with ShardWriter(path, args.size, "train", comp) as w:
                for i, lab in enumerate(labs):
                    w.append(lab, f"{i}.jpg", "0" * 64)
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            read_shard(path)
            t_read = time.perf_counter() - t0
            rows.append(
                {
                    "compression": comp,
                    "images": len(labs),
                    "write ms/img": 1000 * t_write / len(labs),
                    "read ms/img": 1000 * t_read / len(labs),
                    "KB/img": path.stat().st_size / 1024 / len(labs),
                }
            )
    print(f"machine: {machine()}")
    print_table(
        rows,
        f"shard compression, {args.size}x{args.size} Lab float16 (uncompressed "
        f"{args.size * args.size * 3 * 2 / 1024:.0f} KB/img)",
    )


if __name__ == "__main__":
    main()
