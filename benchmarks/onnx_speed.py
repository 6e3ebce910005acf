"""CPU throughput of the model itself: PyTorch vs onnxruntime on the same exported graph.

For each model (the shipped effnet_unet, and untrained seed_ae / unet of the default config),
normalised L batches at the working size go through ``model.ab_from_output(model(x))`` in
PyTorch (``torch.inference_mode``, N threads) and through the ``colorize export`` ONNX file in
onnxruntime (CPU provider, N intra-op threads); images/s is the median of ``--repeats`` timed
runs of ``--iters`` batches after a warm-up. The outputs are compared (max |difference| of
normalised ab) so that the speed is of the same computation.

    python benchmarks/onnx_speed.py                      # 2 threads, batches of 1 and 4
    python benchmarks/onnx_speed.py --threads 4 --batches 1,8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def images_per_s(fn, x, iters: int, repeats: int) -> float:
    fn(x)  # warm-up (allocations, one-time graph optimisation)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(x)
        rates.append(iters * len(x) / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from colorize.checkpoint import load_model
    from colorize.export import OnnxModel, export_onnx
    from colorize.models import ModelConfig, build_model
    from colorize.shipped import SHIPPED

    torch.set_num_threads(args.threads)
    shipped, ckpt = load_model(SHIPPED, "cpu")
    models = [("shipped effnet_unet", shipped, int(ckpt["image_size"]))]
    for name, cfg in (
        ("seed_ae", ModelConfig(arch="seed_ae")),
        ("unet 16x4", ModelConfig(arch="unet", base_channels=16)),
    ):
        torch.manual_seed(0)
        models.append((name, build_model(cfg).eval(), 256))

    print(
        f"CPU, {args.threads} threads; torch {torch.__version__}; images/s (median of {args.repeats})"
    )
    print("| model | size | batch | PyTorch img/s | onnxruntime img/s | ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, size in models:
            onnx_model = OnnxModel(
                export_onnx(model, {"image_size": size}, Path(tmp) / "m.onnx"), threads=args.threads
            )

            def run_torch(x, model=model):
                with torch.inference_mode():
                    return model.ab_from_output(model(x))

            for b in (int(v) for v in args.batches.split(",")):
                x = torch.rand(b, 1, size, size) * 2 - 1
                diff = float((run_torch(x) - onnx_model(x)).abs().max())
                pt = images_per_s(run_torch, x, args.iters, args.repeats)
                ort = images_per_s(onnx_model, x, args.iters, args.repeats)
                print(
                    f"| {name} | {size} | {b} | {pt:.1f} | {ort:.1f} | {ort / pt:.2f}x | {diff:.1e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
