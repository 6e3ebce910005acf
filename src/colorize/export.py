"""ONNX: a colorizer that runs without PyTorch (``colorize export --onnx``), and running one.

The exported graph is the model's inference path, ``ab_norm = ab_from_output(model(L_norm))``:
input ``L_norm`` float32 (batch, 1, height, width), output ``ab_norm`` float32 (batch, 2,
height, width), both axes dynamic, opset ``OPSET``. Height and width must be multiples of the
model's ``size_multiple`` (8, 32, or 2**depth): ``OnnxModel`` pads any other size exactly as the
PyTorch model does (replicate, bottom and right) and crops the result, so the two agree for
every size. The graph is traced at one multiple of that size, where the network's own padding
is a no-op (TF "same" padding is constant for sizes divisible by the stride), which is why
it is exact for all of them.

The file carries what inference needs as metadata: ``image_size`` (the working size),
``size_multiple``, ``model_config`` and ``card`` (JSON), ``colorize_version``.

``OnnxModel`` is an ``nn.Module`` adapter around an onnxruntime session, so the same
``predict``/``infer`` code drives both (``checkpoint.load_model`` returns one for a ``.onnx``
path). onnxruntime is an optional extra: ``pip install -e .[onnx]`` (pinned in envs/).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .files import atomic_path, sha256_file

OPSET = 17
INPUT, OUTPUT = "L_norm", "ab_norm"


class _InferencePath(nn.Module):
    """The graph to export: normalised L in, normalised ab out (the head's decoding included)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, L_norm: torch.Tensor) -> torch.Tensor:
        return self.model.ab_from_output(self.model(L_norm))


def _static_same_padding(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose TF-"same" convolutions (EfficientNet's, padding computed from
    the input size in Python, which a trace freezes into the input's shape) pad by constants:
    for an input size divisible by the stride the "same" padding is ``(k - 1) * d + 1 - s``
    whatever the size, and ``OnnxModel`` feeds only multiples of ``size_multiple``."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ != "Conv2dDynamicSamePadding":
                continue
            (kh, kw), (sh, sw), (dh, dw) = child.weight.shape[-2:], child.stride, child.dilation
            ph, pw = max((kh - 1) * dh + 1 - sh, 0), max((kw - 1) * dw + 1 - sw, 0)
            conv = nn.Conv2d(child.in_channels, child.out_channels, (kh, kw), (sh, sw), 0, (dh, dw), child.groups,
                             child.bias is not None)
            conv.load_state_dict(child.state_dict())
            setattr(parent, name, nn.Sequential(nn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)), conv))
    return model


def export_onnx(model: nn.Module, ckpt: dict, out, *, trace_size: int | None = None) -> Path:
    """Write ``model`` (eval mode, CPU, float32) as ONNX to ``out``; ``ckpt`` supplies the metadata."""
    model = _static_same_padding(model.float().cpu().eval()).eval()
    multiple = int(getattr(model, "size_multiple", 1))
    size = trace_size or max(multiple, 64 // multiple * multiple)
    example = torch.zeros(1, 1, size, size)
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_path(Path(out).with_suffix(".onnx") if Path(out).suffix != ".onnx" else out) as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing Python ints
        torch.onnx.export(_InferencePath(model).eval(), (example,), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: axes, OUTPUT: axes}, opset_version=OPSET, dynamo=False)
        import onnx

        proto = onnx.load(str(tmp))
        meta = {
            "image_size": str(ckpt.get("image_size") or ""),
            "size_multiple": str(multiple),
            "model_config": json.dumps(ckpt.get("model_config") or {}, sort_keys=True),
            "card": json.dumps(ckpt.get("card") or {}, sort_keys=True, default=str),
            "colorize_version": __version__,
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
    return Path(out)


class OnnxModel(nn.Module):
    """An exported colorizer behind the ``nn.Module`` interface ``predict`` uses: ``forward``
    returns normalised ab, ``ab_from_output`` is the identity. Runs on the CPU."""

    def __init__(self, path, threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(f"{path}: running an ONNX model needs onnxruntime: pip install -e .[onnx] "
                              "(pinned in envs/requirements.txt)") from None
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.size_multiple = int(self.meta.get("size_multiple") or 1)
        # the weights' identity, so that --resume sees a changed file (status.run_settings)
        digest = bytes.fromhex(sha256_file(self.path))
        self.register_buffer("onnx_sha256", torch.frombuffer(bytearray(digest), dtype=torch.uint8))

    def checkpoint_info(self) -> dict:
        """What ``checkpoint.load_model`` returns beside the model for a checkpoint file."""
        size = self.meta.get("image_size")
        return {"image_size": int(size) if size else None,
                "model_config": json.loads(self.meta.get("model_config") or "{}"),
                "card": json.loads(self.meta.get("card") or "{}"), "format": "onnx",
                "library_version": self.meta.get("colorize_version")}  # fmt: skip

    def forward(self, L_norm: torch.Tensor) -> torch.Tensor:
        h, w = L_norm.shape[-2:]
        m = self.size_multiple
        x = L_norm.float().cpu()
        if h % m or w % m:
            x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        out = self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(x.numpy())})[0]
        return torch.from_numpy(out[..., :h, :w])

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return out
