"""colorize.export: ONNX export equals PyTorch, and exported models run through predict and the CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from colorize.checkpoint import load_model
from colorize.cli import main
from colorize.export import INPUT, OPSET, OUTPUT, OnnxModel, export_onnx
from colorize.models import ModelConfig, build_model
from colorize.predict import colorize_arrays
from helpers import TINY_UNET, make_good_images, save_checkpoint, tinted_model

torch.set_num_threads(1)

TOLERANCE = 1e-5  # normalised ab (|ab| <= 1): float32 rounding of the same graph; measured ~3e-7


def torch_ab(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.ab_from_output(model(x))


@pytest.mark.parametrize(
    "cfg",
    [
        TINY_UNET,
        ModelConfig(arch="unet", base_channels=4, depth=2, loss="zhang"),
        ModelConfig(arch="seed_ae"),
    ],
    ids=["unet-mse", "unet-zhang", "seed_ae"],
)
def test_onnxruntime_equals_pytorch_at_two_sizes_and_batches(cfg, tmp_path):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = export_onnx(
        model, {"image_size": 48, "model_config": cfg.to_dict()}, tmp_path / "m.onnx"
    )
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == OPSET
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["image_size"] == "48" and meta["size_multiple"] == str(model.size_multiple)
    ort_model = OnnxModel(path)
    for shape in [
        (2, 1, 48, 48),
        (1, 1, 37, 61),
        (3, 1, 64, 40),
    ]:  # dynamic batch; sizes the network must pad
        x = torch.rand(*shape) * 2 - 1
        out = ort_model(x)
        assert out.shape == (shape[0], 2, *shape[2:])
        torch.testing.assert_close(out, torch_ab(model, x), atol=TOLERANCE, rtol=0)


def test_pretrained_encoder_exports_exactly_at_any_size(tmp_path):
    """EfficientNet's TF-'same' padding is computed in Python from the input size: exported as
    constants it would be right only at the traced size; it must hold at every size."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="effnet_unet")).eval()
    ort_model = OnnxModel(export_onnx(model, {"image_size": 64}, tmp_path / "e.onnx"))
    for shape in [(1, 1, 64, 64), (2, 1, 96, 160), (1, 1, 45, 70)]:
        x = torch.rand(*shape) * 2 - 1
        torch.testing.assert_close(ort_model(x), torch_ab(model, x), atol=TOLERANCE, rtol=0)


def test_export_and_predict_through_the_command_line(tmp_path, capsys):
    model = tinted_model()
    ckpt = save_checkpoint(model, TINY_UNET, tmp_path / "best.pt")
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--model", str(ckpt), "--onnx", str(onnx_path), "-q"]) == 0
    graph = onnx.load(str(onnx_path)).graph
    assert [i.name for i in graph.input] == [INPUT] and [o.name for o in graph.output] == [OUTPUT]
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]  # batch and image size dynamic, one channel

    photos = tmp_path / "photos"
    names = make_good_images(photos, n=3, size=(50, 70))
    for flag, out in (("pt", tmp_path / "out_pt"), ("onnx", tmp_path / "out_onnx")):
        src = ckpt if flag == "pt" else onnx_path
        assert (
            main(
                [
                    "predict",
                    "--model",
                    str(src),
                    "--size",
                    "32",
                    "-r",
                    "-o",
                    str(out),
                    "-q",
                    str(photos),
                ]
            )
            == 0
        )
    for name in names:
        a = np.asarray(Image.open(tmp_path / "out_pt" / name).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "out_onnx" / name).convert("RGB"), dtype=np.int16)
        assert a.shape == b.shape == (50, 70, 3)
        assert np.abs(a - b).max() <= 2  # the same colour; JPEG re-encoding may move a level or two

    assert main(["info", str(onnx_path)]) == 0
    assert "architecture" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(
            [
                "predict",
                "--model",
                str(onnx_path),
                "--chroma-gain",
                "1.2",
                "-o",
                str(tmp_path / "x"),
                str(photos),
            ]
        )
    assert e.value.code == 2 and "ONNX model" in capsys.readouterr().err


def test_onnx_model_drives_the_shared_prediction_code(tmp_path):
    model = tinted_model()
    onnx_model, info = load_model(export_onnx(model, {"image_size": 32}, tmp_path / "m.onnx"))
    assert info["image_size"] == 32 and info["format"] == "onnx"
    rgb = (np.random.default_rng(0).random((45, 60, 3)) * 255).astype(np.uint8)
    (a,) = colorize_arrays(model, [rgb], size=32)
    (b,) = colorize_arrays(onnx_model, [rgb], size=32)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_a_file_that_is_not_onnx_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(SystemExit) as e:
        main(["predict", "--model", str(bad), "-o", str(tmp_path / "out"), str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "bad.onnx" in err and "not a loadable ONNX model" in err


@pytest.mark.parametrize("kind", ["other_names", "no_metadata"])
def test_a_valid_onnx_file_of_another_model_is_refused_at_load(tmp_path, capsys, kind):
    """A real, loadable ONNX graph that is not a colorizer: usage error (exit 2) naming what it
    has, before any photo is read (it used to fail every photo with `Required inputs ...`)."""
    import onnx
    from onnx import TensorProto, helper

    names = ("x", "y") if kind == "other_names" else ("L_norm", "ab_norm")
    node = helper.make_node("Concat", [names[0], names[0]], [names[1]], axis=1)
    graph = helper.make_graph(
        [node],
        "other",
        [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, ["B", 1, "H", "W"])],
        [helper.make_tensor_value_info(names[1], TensorProto.FLOAT, ["B", 2, "H", "W"])],
    )
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(other))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(photos / "a.png")
    with pytest.raises(SystemExit) as e:
        main(["predict", "--model", str(other), "-o", str(tmp_path / "out"), str(photos)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "other.onnx" in err
    assert (
        ("needs input 'L_norm'" in err and "'x'" in err)
        if kind == "other_names"
        else "metadata" in err
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))
