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
``size_multiple``, ``model_config`` and ``card`` (JSON), ``colorize_version``, and the source
model's identity (``weights_digest``, ``head_options``: ``runtime``), so that its outputs and
the checkpoint's count as the same model's.

``OnnxModel`` is an ``nn.Module`` adapter around ``runtime.OnnxColorizer``, for the evaluation
code (``checkpoint.load_model`` returns one for a ``.onnx`` path); file inference runs the
``OnnxColorizer`` without PyTorch. onnxruntime is a dependency; the exporter, ``onnx``, is the
``[onnx]`` extra of a bare ``pip install`` (both pinned in envs/requirements.txt).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .files import atomic_path
from .runtime import INPUT, OUTPUT, OnnxColorizer, head_options, weights_digest

OPSET = 17


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
            conv = nn.Conv2d(
                child.in_channels,
                child.out_channels,
                (kh, kw),
                (sh, sw),
                0,
                (dh, dw),
                child.groups,
                child.bias is not None,
            )
            conv.load_state_dict(child.state_dict())
            setattr(
                parent,
                name,
                nn.Sequential(nn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)), conv),
            )
    return model


def export_onnx(model: nn.Module, ckpt: dict, out, *, trace_size: int | None = None) -> Path:
    """Write ``model`` (eval mode, CPU, float32) as ONNX to ``out``; ``ckpt`` supplies the metadata."""
    source = model.float().cpu().eval()
    model = _static_same_padding(source).eval()
    multiple = int(getattr(model, "size_multiple", 1))
    size = trace_size or max(multiple, 64 // multiple * multiple)
    example = torch.zeros(1, 1, size, size)
    axes = {0: "batch", 2: "height", 3: "width"}
    with (
        atomic_path(Path(out).with_suffix(".onnx") if Path(out).suffix != ".onnx" else out) as tmp,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # the exporter's notes on tracing Python ints
        torch.onnx.export(
            _InferencePath(model).eval(),
            (example,),
            str(tmp),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: axes, OUTPUT: axes},
            opset_version=OPSET,
            dynamo=False,
        )
        import onnx

        proto = onnx.load(str(tmp))
        meta = {
            "image_size": str(ckpt.get("image_size") or ""),
            "size_multiple": str(multiple),
            "model_config": json.dumps(ckpt.get("model_config") or {}, sort_keys=True),
            "card": json.dumps(ckpt.get("card") or {}, sort_keys=True, default=str),
            "colorize_version": __version__,
            # the exported model's identity is the checkpoint's: --resume takes either's outputs
            "weights_digest": weights_digest(source),
            "head_options": json.dumps(head_options(source), sort_keys=True),
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
    return Path(out)


class OnnxModel(nn.Module):
    """An exported colorizer (``runtime.OnnxColorizer``) behind the ``nn.Module`` interface the
    evaluation code uses: ``forward`` returns normalised ab, ``ab_from_output`` is the identity.
    Runs on the CPU. (File inference takes the ``OnnxColorizer`` itself, without PyTorch.)"""

    def __init__(self, path, threads: int | None = None):
        """``path``: an .onnx file, or an ``OnnxColorizer`` already open."""
        super().__init__()
        self.runner = path if isinstance(path, OnnxColorizer) else OnnxColorizer(path, threads)
        self.path, self.meta, self.size_multiple = (
            self.runner.path,
            self.runner.meta,
            self.runner.size_multiple,
        )

    def checkpoint_info(self) -> dict:
        return self.runner.checkpoint_info()

    def weights_digest(self) -> str:
        return self.runner.weights_digest()

    def head_options(self) -> dict:
        return self.runner.head_options()

    def forward(self, L_norm: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner.predict_normalized(L_norm.float().cpu().numpy()))

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return out
