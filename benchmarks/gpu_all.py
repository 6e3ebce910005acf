"""Every GPU benchmark in one go, table last. Needs a CUDA machine with torch, h5py and cv2 (no
network, no data: it writes its own HDF5 shards and photos into a temporary folder).

    python benchmarks/gpu_all.py                 # a few minutes on one GPU
    python benchmarks/gpu_all.py --cpu-smoke     # tiny, on the CPU: checks that it runs

1. Model-only step rate (the ceiling): the training step (``_train_bench.Stepper``: forward,
   loss, backward, Adam, ``loss.item()`` as ``colorize.train`` does) on synthetic tensors already
   on the GPU, for ``seed_ae`` and ``unet`` (32 channels, depth 4), fp32 (TF32 allowed, as
   ``configure_backends`` sets) and bf16 autocast + channels_last, batch ``--batch`` (256) at
   256x256, halved until it fits. A second row per case skips the per-step ``loss.item()``
   (what the loop would gain from reading the loss less often).
2. The full loop reading from HDF5 shards, same model, batch and precision:
   ``stream wN`` = ``ShardDataset`` + ``iterate_batches`` (N DataLoader workers, pinned memory,
   as ``colorize.train`` streams), and ``gpu-resident`` = ``InMemoryDataset(device="cuda")``
   (the whole split on the GPU, batches cut there). Reported as img/s and as a share of the
   model-only rate (target >= 90 %). One epoch each, full batches only (a partial last batch
   would be a new shape for cudnn's autotuner, a one-off cost inside a one-epoch timing); the
   first batch is not timed, the epoch's start-up (workers, first batch) is shown apart.
3. Inference on files: one image at a time vs ``colorize_files`` (batched, overlapped), at
   256x256 and 3000x2000.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _preflight() -> None:
    """The project needs numpy, torch, h5py, cv2 and Pillow here; tqdm (progress bars only) is
    replaced by a silent stand-in when a bare GPU node lacks it."""
    import importlib.util
    import types

    missing = [
        m for m in ("numpy", "torch", "h5py", "cv2", "PIL") if importlib.util.find_spec(m) is None
    ]
    if missing:
        sys.exit(
            f"gpu_all.py: missing Python packages {missing} (pip install from a wheel cache; "
            "envs/requirements.txt has the pins)"
        )
    if importlib.util.find_spec("tqdm") is None:

        class _Quiet:
            def __init__(self, iterable=None, *a, **k):
                self.iterable = iterable

            def __iter__(self):
                return iter(self.iterable)

            def __getattr__(self, name):
                return lambda *a, **k: None

        sys.modules["tqdm"] = types.SimpleNamespace(tqdm=_Quiet)
        print("note: tqdm not installed; progress bars off", file=sys.stderr)


_preflight()
import torch  # noqa: E402

from _common import machine, print_table  # noqa: E402
from _train_bench import Stepper, make_shards, smooth_rgb, sync, timed_loop, timed_model_only  # noqa: E402


def fits(arch: str, device, precision: str, batch: int, size: int, small: bool) -> int:
    """The largest batch (``batch``, halved as needed) whose training step fits in memory."""
    while batch >= 1:
        try:
            step = Stepper(arch, device, precision, small)
            L = torch.zeros(batch, 1, size, size, device=device)
            step(L, torch.zeros(batch, 2, size, size, device=device))
            del step, L
            return batch
        except torch.cuda.OutOfMemoryError:
            batch //= 2
            torch.cuda.empty_cache()
    raise RuntimeError("not even a batch of 1 fits")


def training_rows(args, device, tmp: Path) -> list[dict]:
    from colorize.data import InMemoryDataset, ShardDataset, iterate_batches

    shards = make_shards(tmp / "shards", args.images, args.size, args.shards)
    rows = []
    for arch in args.archs.split(","):
        for precision in ("fp32", "bf16"):
            case = f"{arch} {precision}"
            try:
                batch = fits(arch, device, precision, args.batch, args.size, args.cpu_smoke)
                step = Stepper(arch, device, precision, args.cpu_smoke)
                ceiling = timed_model_only(
                    step, batch, args.size, args.seconds, args.min_steps, read_loss=True
                )
                rows.append(_row(case, batch, "model-only", ceiling, ceiling))
                no_item = timed_model_only(
                    step, batch, args.size, args.seconds, args.min_steps, read_loss=False
                )
                rows.append(_row(case, batch, "model-only, no loss.item()", no_item, ceiling))
                for workers in [int(w) for w in args.workers.split(",")]:
                    ds = ShardDataset(shards, train=True, seed=0)
                    ds.set_epoch(1)
                    pin = device.type == "cuda"
                    batches = iterate_batches(
                        ds, batch, num_workers=workers, pin_memory=pin, drop_last=True
                    )
                    r = timed_loop(step, batches)
                    rows.append(_row(case, batch, f"full loop, stream w{workers}", r, ceiling))
                ds = InMemoryDataset(shards, train=True, seed=0, device=device)
                ds.set_epoch(1)
                r = timed_loop(step, ds.batches(batch, drop_last=True))
                rows.append(_row(case, batch, "full loop, gpu-resident", r, ceiling))
                del ds, step
            except Exception as exc:  # one failing case must not cost the others
                traceback.print_exc()
                rows.append(
                    {
                        "case": case,
                        "batch": "-",
                        "what": f"FAILED: {type(exc).__name__}: {exc}"[:80],
                        "img/s": float("nan"),
                        "% of model-only": "-",
                        "start-up s": "-",
                    }
                )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def _row(case, batch, what, r, ceiling) -> dict:
    return {
        "case": case,
        "batch": batch,
        "what": what,
        "img/s": r["img/s"],
        "% of model-only": 100 * r["img/s"] / ceiling["img/s"],
        "start-up s": r.get("startup_s", "-"),
    }


def make_photos(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    paths = []
    for i in range(n):
        tile = smooth_rgb(256, 100 + i)
        img = (
            np.tile(tile, (h // 256 + 1, w // 256 + 1, 1))[:h, :w] if (w, h) != (256, 256) else tile
        )
        p = folder / f"photo_{i:03d}.jpg"
        cv2.imwrite(
            str(p),
            cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 92],
        )
        paths.append(p)
    return paths


def inference_rows(args, device, tmp: Path) -> list[dict]:
    from _train_bench import model_for
    from colorize.colorspace import rgb_to_lab
    from colorize.device import to_device_format
    from colorize.imageio import read_rgb
    from colorize.infer import colorize_files, write_rgb
    from colorize.predict import predict_ab, recombine, working_l

    rows = []
    sets = [("256x256", (256, 256), args.infer_small), ("3000x2000", (3000, 2000), args.infer_full)]
    if args.cpu_smoke:
        sets = [("256x256", (256, 256), 3), ("600x400", (600, 400), 3)]
    for arch in args.archs.split(","):
        _, model = model_for(arch, args.cpu_smoke)
        model = to_device_format(model, device).eval()  # the project's layout on this device
        for label, size, n in sets:
            paths = make_photos(tmp / f"photos-{label}", n, size)
            out = tmp / "out"

            def loop(ps, model=model, out=out):
                for p in ps:
                    L = rgb_to_lab(read_rgb(p))[..., 0]
                    ab = predict_ab(model, working_l(L, args.size)[None])[0]
                    write_rgb(out / "loop" / p.name, recombine(L, ab))

            def batched(ps, model=model, out=out):
                res = colorize_files(model, ps, out / "batched", size=args.size, progress=False)
                assert all(r.ok for r in res), [r for r in res if not r.ok][:1]

            res = {}
            for name, fn in (("one at a time", loop), ("batched (colorize_files)", batched)):
                fn(paths[:2])  # warm-up
                sync(device)
                t0 = time.perf_counter()
                fn(paths)
                sync(device)
                res[name] = len(paths) / (time.perf_counter() - t0)
                rows.append(
                    {
                        "case": f"{arch} infer {label}",
                        "batch": "-",
                        "what": name,
                        "img/s": res[name],
                        "% of model-only": "-",
                        "start-up s": "-",
                    }
                )
            rows[-1]["what"] += f" = {res['batched (colorize_files)'] / res['one at a time']:.2f}x"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="tiny run on the CPU (checks the script, no numbers)",
    )
    ap.add_argument("--archs", default="seed_ae,unet")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--images", type=int, default=3072, help="images in the generated shards")
    ap.add_argument("--shards", type=int, default=12)
    ap.add_argument("--workers", default="2,8", help="DataLoader workers for the streaming rows")
    ap.add_argument("--seconds", type=float, default=4.0, help="time per model-only measurement")
    ap.add_argument("--min-steps", type=int, default=5)
    ap.add_argument(
        "--infer-small", type=int, default=64, help="256x256 photos for the inference rows"
    )
    ap.add_argument(
        "--infer-full", type=int, default=8, help="3000x2000 photos for the inference rows"
    )
    args = ap.parse_args()
    if args.cpu_smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
        args.batch, args.size, args.images, args.shards = 4, 32, 16, 2
        args.workers, args.seconds, args.min_steps = "0,2", 0.0, 2
    else:
        if not torch.cuda.is_available():
            sys.exit(
                "gpu_all.py: no CUDA device (torch.cuda.is_available() is False). "
                "Run it on a GPU node, or use --cpu-smoke to check the script on the CPU."
            )
        device = torch.device("cuda")
        from colorize.device import configure_backends

        configure_backends(device)  # cudnn.benchmark, TF32: as training and inference run
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = training_rows(args, device, tmp)
        rows += inference_rows(args, device, tmp)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (--cpu-smoke)"
    print(
        f"\nmachine: {machine()} | GPU: {gpu} | torch {torch.__version__} | "
        f"{os.cpu_count()} CPU cores | total {time.perf_counter() - t_start:.0f} s"
    )
    print_table(
        rows,
        f"gpu_all: training at {args.size}x{args.size} from {args.images} images in {args.shards} "
        f"HDF5 shards; inference on JPEG files"
        + (" [CPU SMOKE TEST: not GPU numbers]" if args.cpu_smoke else ""),
    )


if __name__ == "__main__":
    main()
