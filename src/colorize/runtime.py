"""A colorizer's identity, and running an exported one without PyTorch.

``weights_digest`` and ``head_options`` say which model made an output (``status.run_settings``,
``--resume``): the same for a checkpoint in PyTorch and for its ONNX export (``export`` writes
them into the file), so a run may switch engines without redoing what is done.

``OnnxColorizer`` runs an ONNX file (``colorize export --onnx``, or the shipped model's
exported twin) in onnxruntime on the CPU behind the small interface ``predict`` and ``infer``
use: ``predict_normalized`` (normalised L batch in, normalised ab out), ``device_type``,
``weights_digest``, ``checkpoint_info``. Nothing here imports PyTorch: ``colorize predict``
with the shipped model on a machine without a GPU never loads it (~2 s and ~190 MB saved, and
onnxruntime's CPU convolutions are ~1.4x PyTorch's on this model; benchmarks/NOTES.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .colorspace import DEFAULT_SIZE
from .files import sha256_file

INPUT, OUTPUT = "L_norm", "ab_norm"  # the exported graph's input and output (export.py)


class CheckpointError(ValueError):
    """A file that is not a loadable colorize checkpoint; the message names the file and why."""


def working_size(ckpt: dict, default: int = DEFAULT_SIZE) -> int:
    """The square size a checkpoint's model works at: its recorded ``image_size``, else ``default``."""
    size = ckpt.get("image_size") or (ckpt.get("train_config") or {}).get("image_size")
    return int(size) if size else int(default)


def weights_digest(model) -> str:
    """sha256 of a model's weights: an exported model's recorded digest (or its file's), else
    of a PyTorch module's state dict (names and bytes, sorted by name)."""
    own = getattr(model, "weights_digest", None)
    if callable(own):
        return own()
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def head_options(model) -> dict:
    """The decoding options a head applies (``temperature`` of zhang, ``chroma_gain`` of mse):
    from the module, or as an export recorded them."""
    own = getattr(model, "head_options", None)
    if callable(own):
        return own()
    head = getattr(model, "head", None)
    return {
        "temperature": getattr(head, "temperature", None),
        "chroma_gain": getattr(head, "chroma_gain", None),
    }


def gpu_present() -> bool:
    """Whether this machine may have a CUDA GPU for PyTorch, without importing it: an NVIDIA
    driver, and CUDA_VISIBLE_DEVICES not set to hide every device."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/proc/driver/nvidia/version")


class OnnxColorizer:
    """An exported colorizer in onnxruntime (CPU). Any height and width: the input is padded
    (replicate, bottom and right) to the model's ``size_multiple`` and the output cropped, as
    the PyTorch model does."""

    device_type = "cpu"
    head = None  # decoding is part of the graph (fixed at export)

    def __init__(self, path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(
                f"{path}: running an ONNX model needs onnxruntime, a dependency of colorize: "
                "pip install -r envs/requirements.txt"
            ) from None
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        # no busy-waiting between runs: the decode and encode threads need those cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check_interface()
        self.size_multiple = int(self.meta.get("size_multiple") or 1)
        self._digest: str | None = None

    def _check_interface(self) -> None:
        """Refuse an ONNX file that is not a colorizer exported by ``colorize export``: one input
        ``L_norm`` (B, 1, H, W), one output ``ab_norm`` (B, 2, H, W), our metadata. (Any valid
        ONNX file loads in onnxruntime; without this every photo would fail later.)"""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        found = (
            f"inputs {[(i.name, len(i.shape or [])) for i in inputs]}, "
            f"outputs {[(o.name, len(o.shape or [])) for o in outputs]}"
        )
        fits = (
            len(inputs) == 1
            and inputs[0].name == INPUT
            and len(inputs[0].shape or []) == 4
            and inputs[0].shape[1] == 1
            and any(o.name == OUTPUT and len(o.shape or []) == 4 for o in outputs)
        )
        if not fits:
            raise ValueError(
                f"not a colorize model: it needs input {INPUT!r} (B, 1, H, W) and output "
                f"{OUTPUT!r} (B, 2, H, W), it has {found}"
            )
        if "model_config" not in self.meta or "size_multiple" not in self.meta:
            raise ValueError(
                "not exported by colorize export: the model_config and size_multiple "
                "metadata are missing"
            )

    def eval(self) -> OnnxColorizer:
        return self

    def checkpoint_info(self) -> dict:
        """What ``checkpoint.load_model`` returns beside the model for a checkpoint file."""
        size = self.meta.get("image_size")
        return {"image_size": int(size) if size else None,
                "model_config": json.loads(self.meta.get("model_config") or "{}"),
                "card": json.loads(self.meta.get("card") or "{}"), "format": "onnx",
                "library_version": self.meta.get("colorize_version")}  # fmt: skip

    def weights_digest(self) -> str:
        """The exported model's own digest (so its outputs count as the checkpoint's), else the file's."""
        if self._digest is None:
            self._digest = self.meta.get("weights_digest") or sha256_file(self.path)
        return self._digest

    def head_options(self) -> dict:
        recorded = json.loads(self.meta.get("head_options") or "{}")
        return {
            "temperature": recorded.get("temperature"),
            "chroma_gain": recorded.get("chroma_gain"),
        }

    def predict_normalized(self, L_norm: np.ndarray) -> np.ndarray:
        """(B, H, W) or (B, 1, H, W) normalised L -> (B, 2, H, W) float32 normalised ab."""
        x = np.asarray(L_norm, np.float32)
        if x.ndim == 3:
            x = x[:, None]
        h, w = x.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            x = np.pad(x, ((0, 0), (0, 0), (0, (-h) % m), (0, (-w) % m)), mode="edge")
        out = self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(x)})[0]
        return np.ascontiguousarray(out[..., :h, :w])


def open_onnx(path, threads: int | None = None) -> OnnxColorizer:
    """``OnnxColorizer(path)``, with a ``CheckpointError`` naming the file when it is missing or
    is not a model onnxruntime can load (an ImportError when onnxruntime is missing)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return OnnxColorizer(path, threads)
    except ImportError:
        raise
    except Exception as e:  # onnxruntime's errors for a file that is not a model
        raise CheckpointError(
            f"{path}: not a loadable ONNX model ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else 'no details'})"
        ) from None
