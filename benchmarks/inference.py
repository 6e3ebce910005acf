"""Inference throughput on files: the one-image-at-a-time loop vs ``colorize_files`` (batched,
decode and encode overlapped with the model), on this machine's CPU (or ``--device cuda``).

- ``loop``: what a peer writes with the library's public pieces, one photo at a time:
  ``read_rgb`` -> ``rgb_to_lab`` -> ``working_l`` -> ``predict_ab`` (batch of 1) ->
  ``recombine`` -> ``write_rgb``.
- ``floor``: decode and encode each file with OpenCV (JPEG q95), nothing else: the physical
  floor the other two are measured against (issue 13's target: batched >= 50 % of it).
- ``batched``: ``colorize.infer.colorize_files`` (what ``colorize predict`` and the workflow's
  ``colorize_folder`` rule run): a decode thread pool, model batches, an encode thread pool.

Both write full-resolution JPEGs; each runs in its own process (peak RSS is its own), after
a warm-up on two images; medians of ``--repeats``. Models have random weights (speed only),
except ``--arch shipped`` (as ``colorize predict`` runs it: on a CPU, its ONNX twin in
onnxruntime) and ``--arch shipped-torch`` (the same checkpoint in PyTorch).

    python benchmarks/inference.py --inputs 256 --n 64
    python benchmarks/inference.py --inputs full --n 12      # ~3000x2000 photos
    python benchmarks/inference.py --inputs full --n 12 --arch seed_ae
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
from _common import machine, print_table  # noqa: E402
from preprocess import _bsds, make_big_set  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if (REPO / "src").is_dir():
    sys.path.insert(0, str(REPO / "src"))


def make_inputs(kind: str, n: int, out: Path) -> list[Path]:
    if kind == "full":
        return make_big_set(n, out, "tiled")
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, p in enumerate(_bsds()[:n]):
        img = cv2.imread(str(p))
        s = min(img.shape[:2])
        img = cv2.resize(img[:s, :s], (256, 256), interpolation=cv2.INTER_AREA)
        q = out / f"in_{i:04d}.jpg"
        cv2.imwrite(str(q), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(q)
    return paths


def _model(arch: str, device: str):
    """(model, working size): ``shipped`` as ``colorize predict`` runs it (``load_for_inference``:
    on a CPU its ONNX twin in onnxruntime, PyTorch never imported), ``shipped-torch`` the same
    checkpoint in PyTorch, else random weights at the default 256."""
    if arch == "shipped":
        from colorize.runtime import working_size
        from colorize.shipped import load_for_inference

        model, ckpt = load_for_inference(None, device)
        return model, working_size(ckpt)
    import torch

    from colorize.checkpoint import DEFAULT_SIZE, load_model, working_size
    from colorize.device import to_device_format

    torch.set_num_threads(os.cpu_count() or 1)
    if arch == "shipped-torch":
        from colorize.shipped import SHIPPED

        model, ckpt = load_model(SHIPPED, device)
        return model, working_size(ckpt)
    from colorize.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, base_channels=16) if arch == "unet" else ModelConfig(arch=arch)
    return to_device_format(build_model(cfg), torch.device(device)).eval(), DEFAULT_SIZE


def run_floor(model, paths, out: Path, size: int, batch_size) -> int:
    """The physical floor: decode and encode each file (OpenCV, JPEG q95), nothing else."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        ok, buf = cv2.imencode(".jpg", cv2.imread(str(p)), [cv2.IMWRITE_JPEG_QUALITY, 95])
        (out / p.name).write_bytes(buf.tobytes())
    return len(paths)


def run_loop(model, paths, out: Path, size: int, batch_size) -> int:
    from colorize.colorspace import rgb_to_lab
    from colorize.imageio import read_rgb
    from colorize.infer import write_rgb
    from colorize.predict import predict_ab, recombine, working_l

    for p in paths:
        L = rgb_to_lab(read_rgb(p))[..., 0]
        ab = predict_ab(model, working_l(L, size)[None])[0]
        write_rgb(out / p.name, recombine(L, ab))
    return len(paths)


def run_batched(model, paths, out: Path, size: int, batch_size) -> int:
    from colorize.infer import colorize_files

    results = colorize_files(model, paths, out, size=size, batch_size=batch_size, progress=False)
    bad = [r for r in results if not r.ok]
    if bad:
        raise RuntimeError(f"{len(bad)} failed, e.g. {bad[0]}")
    return len(paths)


def child(method: str, listfile: str, arch: str, device: str, out: str, batch_size: int) -> None:
    import resource

    if method == "batched":
        from colorize.infer import one_malloc_arena

        one_malloc_arena()  # as `colorize predict` does, before the model starts torch's threads
    paths = [Path(p) for p in Path(listfile).read_text().split("\n") if p]
    model, size = (None, 0) if method == "floor" else _model(arch, device)
    fn = {"floor": run_floor, "loop": run_loop, "batched": run_batched}[method]
    out = Path(out)
    fn(model, paths[:2], out / "warmup", size, batch_size or None)
    t0 = time.perf_counter()
    n = fn(model, paths, out / "run", size, batch_size or None)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "n": n,
                "seconds": dt,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def measure(method, paths, arch, device, tmp: Path, batch_size: int) -> dict:
    listfile = tmp / "inputs.lst"
    listfile.write_text("\n".join(map(str, paths)))
    out = tmp / f"out-{method}"
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            method,
            str(listfile),
            arch,
            device,
            str(out),
            str(batch_size),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--inputs", choices=["256", "full"], default="256")
    ap.add_argument("--n", type=int, default=None, help="photos (default 64 at 256, 12 full)")
    ap.add_argument(
        "--arch", default="unet", choices=["unet", "seed_ae", "shipped", "shipped-torch"]
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--batch-size", type=int, default=0, help="0: colorize_files' default for the device"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="floor,loop,batched")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        m, lst, arch, dev, out, bs = args.child
        child(m, lst, arch, dev, out, int(bs))
        return
    n = args.n or (64 if args.inputs == "256" else 12)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_inputs(args.inputs, n, tmp / "in")
        methods = args.methods.split(",")
        runs = {m: [] for m in methods}
        for _ in range(
            args.repeats
        ):  # interleaved: a load that comes and goes hits every method alike
            for m in methods:
                runs[m].append(measure(m, paths, args.arch, args.device, tmp, args.batch_size))
        res = {
            m: {
                "n": r[0]["n"],
                "seconds": statistics.median(x["seconds"] for x in r),
                "rss": max(x["peak_rss_mb"] for x in r),
            }
            for m, r in runs.items()
        }
    base, floor = res.get("loop"), res.get("floor")
    for m, r in res.items():
        ips = r["n"] / r["seconds"]
        rows.append(
            {
                "method": m,
                "images": r["n"],
                "seconds": r["seconds"],
                "img/s": ips,
                "x loop": ips / (base["n"] / base["seconds"]) if base else "-",
                "% of floor": 100 * ips / (floor["n"] / floor["seconds"]) if floor else "-",
                "peak RSS MB": r["rss"],
            }
        )
    print(f"machine: {machine()}")
    size = "256x256" if args.inputs == "256" else "3000x2000"
    weights = {
        "shipped": "trained weights, as colorize predict runs it (onnxruntime on a CPU)",
        "shipped-torch": "trained weights, in PyTorch",
    }.get(args.arch, "random weights")
    print_table(
        rows,
        f"inference: {args.arch} ({weights}), {size} JPEG in and out, device {args.device}, "
        f"median of {args.repeats}",
    )


if __name__ == "__main__":
    main()
