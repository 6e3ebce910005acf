"""CPU speed of each architecture in the default (NCHW) layout and in channels_last (NHWC),
the layout ``colorize.device.memory_format`` picks on the CPU and on CUDA.

For each architecture with ``ModelConfig``'s defaults (``effnet_unet``: Lite0, frozen, the
shipped recipe; ``unet``: 32 channels, depth 4; ``seed_ae``: the seed's network), one training step as ``colorize.train`` takes it (forward,
the model's loss, backward, Adam) on synthetic batches, and inference under
``torch.inference_mode``, each in both layouts, alternating, as the median of ``--repeats``
timed runs. The two layouts compute the same function: the largest |difference| of their
outputs is printed beside the speeds.

    python benchmarks/memory_format.py                      # 2 threads
    python benchmarks/memory_format.py --threads 4 --archs effnet_unet
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import print_report
from _train_bench import model_for

LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
# (batch, crop) of a training step and (batch, size) of inference, as the presets run them
SHAPES = {
    "effnet_unet": ((16, 96), (4, 128)),  # config/presets/shipped.yaml; the working size
    "unet": ((8, 128), (4, 256)),  # the demo's batch and crop; the seed's 256
    "seed_ae": ((8, 128), (4, 256)),
}


def rate(fn, images: int, iters: int, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks its kernels for the shape and layout
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append(time.perf_counter() - t0)
    return images * iters / statistics.median(times)


def measure(arch: str, layout, iters: int, repeats: int) -> dict:
    from colorize.train import loss_for

    (tb, ts), (ib, isz) = SHAPES[arch]
    cfg, model = model_for(arch)  # seeded: both layouts start from the same weights
    model = model.to(memory_format=layout).train()
    loss_fn = loss_for(cfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    L = (torch.rand(tb, 1, ts, ts, generator=gen) * 2 - 1).to(memory_format=layout)
    ab = (torch.rand(tb, 2, ts, ts, generator=gen) * 0.6 - 0.3).to(memory_format=layout)

    def step():
        loss = loss_fn(model(L), ab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()

    train = rate(step, tb, iters, repeats)
    _, model = model_for(arch)
    model = model.to(memory_format=layout).eval()
    x = (torch.rand(ib, 1, isz, isz, generator=gen) * 2 - 1).to(memory_format=layout)
    with torch.inference_mode():
        infer = rate(lambda: model(x), ib, iters, repeats)
        out = model(x).contiguous()
    return {"train": train, "infer": infer, "out": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="effnet_unet,unet,seed_ae")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs.split(","):
        got = {name: measure(arch, fmt, args.iters, args.repeats) for name, fmt in LAYOUTS.items()}
        a, b = got["NCHW"], got["channels_last"]
        (tb, ts), (ib, isz) = SHAPES[arch]
        rows.append({
            "arch": arch,
            "train step (batch x crop)": f"{tb} x {ts}²",
            "train NCHW img/s": a["train"],
            "train channels_last img/s": b["train"],
            "train speed-up": b["train"] / a["train"],
            "inference (batch x size)": f"{ib} x {isz}²",
            "infer NCHW img/s": a["infer"],
            "infer channels_last img/s": b["infer"],
            "infer speed-up": b["infer"] / a["infer"],
            "max |out diff|": float((a["out"] - b["out"]).abs().max()),
        })  # fmt: skip
    print_report(rows, f"CPU, {args.threads} threads, torch {torch.__version__}")


if __name__ == "__main__":
    main()
