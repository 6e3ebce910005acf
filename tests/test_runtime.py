"""colorize.runtime and shipped.load_for_inference: the shipped model's ONNX twin is the
checkpoint, runs without PyTorch, and its outputs count as the checkpoint's."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from colorize.runtime import CheckpointError, OnnxColorizer, open_onnx, weights_digest
from colorize.shipped import SHIPPED, SHIPPED_ONNX, load_for_inference
from colorize.status import run_settings
from helpers import gradient_photo, save


@pytest.fixture(scope="module")
def both():
    from colorize.checkpoint import load_model

    torch_model, ckpt = load_model(SHIPPED, "cpu")
    return torch_model, ckpt, OnnxColorizer(SHIPPED_ONNX)


def test_the_committed_twin_is_the_shipped_checkpoint(both):
    """Same predictions (to float rounding), same identity, same working size: a stale twin
    (the .pt changed, the .onnx not re-exported: python -m colorize.shipped PT --twin) fails here."""
    import torch

    from colorize.predict import predict_ab

    torch_model, ckpt, twin = both
    L_norm = np.random.default_rng(0).uniform(-1, 1, (3, 128, 128)).astype(np.float32)
    L_norm[1] = np.linspace(-1, 1, 128)[None, :]
    with torch.inference_mode():
        expected = predict_ab(torch_model, L_norm)
    assert np.abs(predict_ab(twin, L_norm) - expected).max() < 1e-3  # ab units (about +-128)
    assert twin.weights_digest() == weights_digest(torch_model)
    assert run_settings(twin, size=128, jpeg_quality=95) == run_settings(
        torch_model, size=128, jpeg_quality=95
    )
    assert twin.checkpoint_info()["image_size"] == ckpt["image_size"]
    odd = (
        np.random.default_rng(1).uniform(-1, 1, (1, 70, 90)).astype(np.float32)
    )  # not a multiple of 32
    with torch.inference_mode():
        assert np.abs(predict_ab(twin, odd) - predict_ab(torch_model, odd)).max() < 1e-3


def test_load_for_inference_takes_onnxruntime_on_a_cpu_and_pytorch_otherwise(tmp_path):
    model, info = load_for_inference(None, "cpu")
    assert isinstance(model, OnnxColorizer) and model.path == SHIPPED_ONNX and info["image_size"]
    assert isinstance(load_for_inference("shipped", "cpu")[0], OnnxColorizer)
    tuned, _ = load_for_inference(None, "cpu", chroma_gain=1.5)  # decoding options need the module
    assert not isinstance(tuned, OnnxColorizer) and hasattr(tuned, "head")
    onnx, _ = load_for_inference(SHIPPED_ONNX, "cuda")  # a .onnx file always runs in onnxruntime
    assert isinstance(onnx, OnnxColorizer)
    bad = tmp_path / "not a model.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(CheckpointError, match="not a model.onnx: not a loadable ONNX model"):
        open_onnx(bad)
    with pytest.raises(CheckpointError, match="no such file"):
        open_onnx(tmp_path / "missing.onnx")


def test_colorize_predict_on_a_cpu_never_imports_pytorch(tmp_path):
    for i in range(3):
        save(tmp_path / "in" / f"photo {i}.jpg", gradient_photo(120 + 10 * i, 160, i))
    code = (
        "import sys; from colorize.cli import main; "
        f"rc = main(['predict', '--quiet', '--device', 'cpu', '--output', {str(tmp_path / 'out')!r}, "
        f"{str(tmp_path / 'in')!r}]); print('torch' in sys.modules, rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "False 0"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == [
        f"photo {i}.jpg" for i in range(3)
    ]


def test_both_engines_make_the_same_outputs_and_resume_each_other(tmp_path, both):
    """colorize_files with the twin and with the checkpoint: images within one level (float
    rounding of the two runtimes' convolutions), and a run of one resumed by the other skips
    every photo (the same settings)."""
    from colorize.imageio import read_rgb
    from colorize.infer import colorize_files

    torch_model, ckpt, twin = both
    for i in range(3):
        save(tmp_path / "in" / f"p{i}.png", gradient_photo(150, 200 + 7 * i, i + 3))
    inputs = sorted((tmp_path / "in").iterdir())
    kw = dict(size=ckpt["image_size"], progress=False, batch_size=2, workers=2)
    a = colorize_files(twin, inputs, tmp_path / "onnx", **kw)
    b = colorize_files(torch_model, inputs, tmp_path / "torch", **kw)
    assert all(r.ok for r in a) and all(r.ok for r in b)
    for p in inputs:
        diff = np.abs(
            read_rgb(tmp_path / "onnx" / p.name).astype(int) - read_rgb(tmp_path / "torch" / p.name)
        )
        assert diff.max() <= 1, p.name
    again = colorize_files(torch_model, inputs, tmp_path / "onnx", resume=True, **kw)
    assert again.resumed == len(inputs)


def test_a_copy_of_the_shipped_checkpoint_is_the_shipped_model(tmp_path):
    """The workflow colorizes with results/<set>/models/shipped/best.pt, a copy: its twin runs."""
    import shutil

    copy = tmp_path / "best.pt"
    shutil.copy(SHIPPED, copy)
    assert isinstance(load_for_inference(copy, "cpu")[0], OnnxColorizer)
