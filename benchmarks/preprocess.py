"""Preprocessing throughput: decode -> resize -> Lab -> HDF5, per core, against the seed's way.

Baseline ("seed"): per image, skimage.io.imread + skimage.transform.resize (anti-aliased) +
skimage.color.rgb2lab in a Python loop, arrays held in a list in RAM (as the notebook did).
Project: colorize.preprocess.prepare_image + ShardWriter.append (reduced-size JPEG decode,
OpenCV area resize, OpenCV Lab, one chunk per image).
Floor: the unavoidable parts measured in the same run: a full decode + one Lab conversion
+ the shard write of an already-resized image.

Each method runs in its own subprocess (one core), so peak RSS is its own.

    python benchmarks/preprocess.py --set intel --n 400         # 150x150 thumbnails
    python benchmarks/preprocess.py --set big --n 20            # ~3000x2000 photos
    python benchmarks/preprocess.py --set intel --n 400 --scale 10   # memory at 10x the set
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, machine, print_table  # noqa: E402


def real_jpegs(n: int) -> list[Path]:
    root = SHARED_DATA / "intel_natural" / "train"
    files = sorted(root.rglob("*.jpg"))
    if not files:
        sys.exit(f"no photos under {root}: this benchmark needs ../shared/data (see README)")
    step = max(1, len(files) // n)
    return files[::step][:n]


def make_big_set(n: int, out: Path) -> list[Path]:
    """~3000x2000 JPEGs made by upscaling real BSDS500 photos (real content, camera-like size)."""
    import cv2

    src = sorted((SHARED_DATA / "bsds500" / "train").glob("*.jpg"))[:n]
    if not src:
        sys.exit("no BSDS500 photos under ../shared/data")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in src:
        img = cv2.imread(str(p))
        h, w = img.shape[:2]
        big = cv2.resize(img, (3000, 2000) if w >= h else (2000, 3000), interpolation=cv2.INTER_CUBIC)
        q = out / p.name
        cv2.imwrite(str(q), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(q)
    return paths


def run_seed(paths, size):
    from skimage import color, io, transform

    held = []
    for p in paths:
        rgb = io.imread(p)
        if rgb.ndim == 2:
            rgb = color.gray2rgb(rgb)
        rgb = transform.resize(rgb[..., :3], (size, size), anti_aliasing=True)
        held.append(color.rgb2lab(rgb).astype("float32"))
    return len(held)


def run_project(paths, size, out):
    from colorize.imageio import ImageDecodeError
    from colorize.preprocess import PreprocessConfig, prepare_image
    from colorize.shards import ShardWriter

    cfg = PreprocessConfig(image_size=size)
    done = 0
    with ShardWriter(out, size, "train", cfg.compression) as w:
        for p in paths:
            try:
                w.append(prepare_image(p, cfg), p.name, "0" * 64)
            except ImageDecodeError:  # gray photos are decoded and measured, then excluded
                pass
            done += 1
    return done


def run_floor(paths, size, out):
    """Full decode + ONE Lab conversion at the target size + the write: what cannot be avoided
    (the resize itself is folded into the reduced-size decode where possible)."""
    import cv2
    import numpy as np

    from colorize.colorspace import rgb_to_lab
    from colorize.shards import ShardWriter

    with ShardWriter(out, size, "train", "lzf") as w:
        for p in paths:
            bgr = cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR)
            small = np.ascontiguousarray(bgr[:size, :size]) if min(bgr.shape[:2]) >= size else \
                cv2.resize(bgr, (size, size), interpolation=cv2.INTER_NEAREST)
            w.append(rgb_to_lab(small), p.name, "0" * 64)
    return w.n


def child(method: str, listfile: str, size: int, out: str) -> None:
    import resource

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    paths = [Path(p) for p in Path(listfile).read_text().split("\n") if p]
    t0 = time.perf_counter()
    n = {"seed": lambda: run_seed(paths, size), "project": lambda: run_project(paths, size, out),
         "floor": lambda: run_floor(paths, size, out)}[method]()
    dt = time.perf_counter() - t0
    print(json.dumps({"n": n, "seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(method, paths, size, tmp) -> dict:
    listfile = Path(tmp) / f"{method}.lst"
    listfile.write_text("\n".join(map(str, paths)))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--child", method, str(listfile), str(size),
                          str(Path(tmp) / f"{method}.h5")], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=["intel", "big"], default="intel")
    ap.add_argument("--n", type=int, default=400, help="images in the set")
    ap.add_argument("--size", type=int, default=256, help="target image size")
    ap.add_argument("--scale", type=int, default=1, help="repeat the set this many times (memory check)")
    ap.add_argument("--methods", default="seed,project,floor")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return
    with tempfile.TemporaryDirectory() as tmp:
        paths = real_jpegs(args.n) if args.set == "intel" else make_big_set(args.n, Path(tmp) / "big")
        paths = paths * args.scale
        rows, base = [], None
        for method in args.methods.split(","):
            r = measure(method, paths, args.size, tmp)
            ips = r["n"] / r["seconds"]
            base = base or ips
            rows.append({"method": method, "images": r["n"], "seconds": r["seconds"], "img/s (1 core)": ips,
                         "ms/img": 1000 / ips, "x seed": ips / base, "peak RSS MB": r["peak_rss_mb"]})
    print(f"machine: {machine()}")
    print_table(rows, f"preprocess: set={args.set} n={len(paths)} size={args.size}")


if __name__ == "__main__":
    main()
