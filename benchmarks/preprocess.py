"""Preprocessing throughput: decode -> resize -> Lab -> HDF5, per core, against the seed's way.

Methods (each in its own single-threaded subprocess, so its peak RSS is its own; imports and a
two-image warm-up happen before the clock starts; medians of ``--repeats`` runs):

- ``seed``: per image, skimage.io.imread + skimage.transform.resize (anti-aliased) +
  skimage.color.rgb2lab in a Python loop, arrays held in a list in RAM (as the notebook did).
- ``project``: ``colorize.preprocess.build_shard``, the workflow's shard job itself (one read
  per file, reduced-size JPEG decode, OpenCV resize and Lab, batched float16 HDF5 writes).
- ``before``: the same function from an older commit (``--before REV``, e.g. the commit this
  work started from), to measure a change in the same run.
- ``floor``: only the unavoidable parts, each timed on its own in one loop: the cheapest decode
  (the reduced-size JPEG decode the project chooses: for a big photo it IS the cheapest decode
  that still has enough pixels), one Lab conversion of a target-size image (uint8 -> float32
  -> Lab), and the write (float16 + HDF5, the cheaper of the batched writer and raw chunk
  writes). Not in the floor: the header check, the resize, the grayscale check.

    python benchmarks/preprocess.py --set intel --n 400              # 150x150 thumbnails
    python benchmarks/preprocess.py --set big --n 20                 # ~3000x2000 photos
    python benchmarks/preprocess.py --set intel --n 400 --scale 10 --methods project,floor   # memory at 10x
    python benchmarks/preprocess.py --set intel --methods before,project --before ed2a98c

``--set big`` tiles real BSDS500 photos into 3000x2000 JPEGs (quality 92, ~2.2 MB each, like a
camera's); ``--set big-upscaled`` upscales one photo instead (smooth, ~0.7 MB: decodes ~2x
faster, flattering every method).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, machine, print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def real_jpegs(n: int) -> list[Path]:
    root = SHARED_DATA / "intel_natural" / "train"
    files = sorted(root.rglob("*.jpg"))
    if not files:
        sys.exit(f"no photos under {root}: this benchmark needs ../shared/data (see README)")
    step = max(1, len(files) // n)
    return files[::step][:n]


def _bsds() -> list[Path]:
    src = sorted((SHARED_DATA / "bsds500" / "train").glob("*.jpg"))
    if not src:
        sys.exit("no BSDS500 photos under ../shared/data")
    return src


def make_big_set(n: int, out: Path, how: str = "tiled", size=(3000, 2000)) -> list[Path]:
    """``n`` JPEGs of ``size`` (W, H) from real BSDS500 photos: ``tiled`` (a mosaic of different
    photos at their own detail, camera-like file size) or ``upscaled`` (one photo, bicubic)."""
    import cv2
    import numpy as np

    src = _bsds()
    out.mkdir(parents=True, exist_ok=True)
    W, H = size
    tiles = [cv2.imread(str(p)) for p in src[: max(n, 60)]]
    tiles = [np.ascontiguousarray(np.rot90(t)) if t.shape[0] > t.shape[1] else t for t in tiles]
    paths = []
    for i in range(n):
        if how == "upscaled":
            big = cv2.resize(tiles[i % len(tiles)], (W, H), interpolation=cv2.INTER_CUBIC)
        else:
            big = np.empty((H, W, 3), np.uint8)
            k = i
            for y in range(0, H, 321):
                for x in range(0, W, 481):
                    t = tiles[k % len(tiles)]
                    h, w = min(321, H - y), min(481, W - x)
                    big[y : y + h, x : x + w] = t[:h, :w]
                    k += 7
        q = out / f"{how}_{i:04d}.jpg"
        cv2.imwrite(str(q), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(q)
    return paths


# --- the methods (run in the child process) ---------------------------------------------------


def run_seed(paths, size, out):
    from skimage import color, io, transform

    held = []
    for p in paths:
        rgb = io.imread(p)
        if rgb.ndim == 2:
            rgb = color.gray2rgb(rgb)
        rgb = transform.resize(rgb[..., :3], (size, size), anti_aliasing=True)
        held.append(color.rgb2lab(rgb).astype("float32"))
    return {"n": len(held)}


def run_project(paths, size, out):
    from colorize.preprocess import PreprocessConfig, build_shard

    rows = [{"relpath": f"{i:06d}/{p.name}", "sha256": "0" * 64} for i, p in enumerate(paths)]
    counts = build_shard(
        rows,
        paths,
        out,
        Path(out).with_suffix(".tsv"),
        "train",
        PreprocessConfig(image_size=size),
        progress=False,
    )
    return {"n": len(paths), "ok": counts["ok"]}


def run_floor(paths, size, out):
    """Decode (cheapest), one Lab conversion at the target size, the write: timed separately."""
    import cv2
    import h5py
    import numpy as np

    from colorize.colorspace import lab_planes
    from colorize.imageio import _REDUCED_FLAGS, jpeg_reduction
    from colorize.shards import STORE_DTYPE, ShardWriter, to_float16

    t_dec = t_lab = t_write = t_raw = 0.0
    planes_all = []
    clock = time.perf_counter
    with ShardWriter(out, size, "train", "none") as w:
        for p in paths:
            t0 = clock()
            data = np.fromfile(p, np.uint8)
            h, wd = _jpeg_size(data)
            r = jpeg_reduction(wd, h, size)
            bgr = cv2.imdecode(data, _REDUCED_FLAGS[r] | cv2.IMREAD_IGNORE_ORIENTATION)
            t1 = clock()
            t_dec += t1 - t0
            # The Lab conversion needs a target-size image; getting one (crop, or nearest
            # upscale for a small photo) is the resize's job, not timed here.
            if min(bgr.shape[:2]) >= size:
                small = np.ascontiguousarray(bgr[:size, :size])
            else:
                small = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_NEAREST)
            t2 = clock()
            planes = lab_planes(small, "BGR")
            t3 = clock()
            t_lab += t3 - t2
            w.append(planes.transpose(1, 2, 0), p.name, "0" * 64)
            t_write += clock() - t3
            if len(planes_all) < 16:
                planes_all.append(planes)
    # The other write: raw chunk writes (no HDF5 selection machinery) of float16 planes.
    n = len(paths)
    with h5py.File(Path(out).with_suffix(".raw.h5"), "w") as f:
        L = f.create_dataset("L", (n, size, size), STORE_DTYPE, chunks=(1, size, size))
        ab = f.create_dataset("ab", (n, 2, size, size), STORE_DTYPE, chunks=(1, 2, size, size))
        half = np.empty((3, size, size), STORE_DTYPE)
        t0 = clock()
        for i in range(n):
            planes = planes_all[i % len(planes_all)]
            to_float16(planes, half)
            L.id.write_direct_chunk((i, 0, 0), half[0])
            ab.id.write_direct_chunk((i, 0, 0, 0), half[1:])
        f.flush()
        t_raw = clock() - t0
    best_write = min(t_write, t_raw)
    return {
        "n": n,
        "seconds": t_dec + t_lab + best_write,
        "decode_s": t_dec,
        "lab_s": t_lab,
        "write_s": best_write,
        "write_batched_s": t_write,
        "write_raw_s": t_raw,
    }


def _jpeg_size(data) -> tuple[int, int]:
    """(height, width) from a JPEG's SOF marker (what the decoder reads first anyway)."""
    b = data.tobytes()
    i = 2
    while i < len(b) - 9:
        if b[i] != 0xFF:
            i += 1
            continue
        marker = b[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(b[i + 5 : i + 7], "big"), int.from_bytes(b[i + 7 : i + 9], "big")
        i += 2 + int.from_bytes(b[i + 2 : i + 4], "big")
    raise ValueError("no SOF marker")


METHODS = {"seed": run_seed, "project": run_project, "before": run_project, "floor": run_floor}


def child(method: str, listfile: str, size: int, out: str) -> None:
    import resource

    import cv2

    cv2.setNumThreads(1)
    paths = [Path(p) for p in Path(listfile).read_text().split("\n") if p]
    fn = METHODS[method]
    fn(paths[:2], size, out + ".warmup.h5")  # imports, first-call costs: not timed
    t0 = time.perf_counter()
    r = fn(paths, size, out)
    r.setdefault("seconds", time.perf_counter() - t0)
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(r))


def _before_tree(rev: str, tmp: Path) -> Path:
    """``src/`` of commit ``rev``, extracted into ``tmp`` (for the ``before`` method)."""
    dest = tmp / f"before-{rev}"
    if not dest.exists():
        dest.mkdir(parents=True)
        tar = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, "src/colorize"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest / "src"


def measure(method, paths, size, tmp, before: str | None = None) -> dict:
    listfile = Path(tmp) / f"{method}.lst"
    listfile.write_text("\n".join(map(str, paths)))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if method == "before":
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_before_tree(before, Path(tmp))), env.get("PYTHONPATH", "")]
        )
    out = Path(tmp) / f"{method}.h5"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", method, str(listfile), str(size), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
    for f in Path(tmp).glob(f"{method}.*h5*"):
        f.unlink()
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(method, paths, size, tmp, repeats, before=None) -> dict:
    runs = [measure(method, paths, size, tmp, before) for _ in range(repeats)]
    med = statistics.median(r["seconds"] for r in runs)
    r = dict(min(runs, key=lambda r: abs(r["seconds"] - med)))
    r["seconds"] = med
    r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--set", choices=["intel", "big", "big-upscaled"], default="intel")
    ap.add_argument(
        "--n", type=int, default=None, help="images in the set (default 400 intel, 20 big)"
    )
    ap.add_argument("--size", type=int, default=256, help="target image size")
    ap.add_argument(
        "--scale", type=int, default=1, help="repeat the set this many times (memory check)"
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs per method; the table shows the median"
    )
    ap.add_argument("--methods", default="seed,project,floor")
    ap.add_argument("--before", default=None, help="git revision for the 'before' method")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return
    methods = args.methods.split(",")
    if "before" in methods and not args.before:
        ap.error("--methods before needs --before REV")
    n = args.n or (400 if args.set == "intel" else 20)
    with tempfile.TemporaryDirectory() as tmp:
        if args.set == "intel":
            paths = real_jpegs(n)
        else:
            paths = make_big_set(n, Path(tmp) / "big", "tiled" if args.set == "big" else "upscaled")
        paths = paths * args.scale
        results = {
            m: median_run(m, paths, args.size, tmp, args.repeats, args.before) for m in methods
        }
    ms = {m: 1000 * r["seconds"] / r["n"] for m, r in results.items()}
    rows = []
    for m, r in results.items():
        rows.append(
            {
                "method": m,
                "images": r["n"],
                "seconds": r["seconds"],
                "img/s (1 core)": 1000 / ms[m],
                "ms/img": ms[m],
                "x seed": ms["seed"] / ms[m] if "seed" in ms else "-",
                "/ floor": ms[m] / ms["floor"] if "floor" in ms else "-",
                "peak RSS MB": r["peak_rss_mb"],
            }
        )
    print(f"machine: {machine()}")
    print_table(
        rows,
        f"preprocess: set={args.set} n={len(paths)} (x{args.scale}) size={args.size}, "
        f"median of {args.repeats}",
    )
    if "floor" in results:
        f = results["floor"]
        per = lambda k: 1000 * f[k] / f["n"]  # noqa: E731
        print_table(
            [
                {
                    "decode ms": per("decode_s"),
                    "Lab ms": per("lab_s"),
                    "write ms": per("write_s"),
                    "(batched writer ms)": per("write_batched_s"),
                    "(raw chunk ms)": per("write_raw_s"),
                    "floor ms": per("seconds"),
                }
            ],
            "floor, per image",
        )


if __name__ == "__main__":
    main()
