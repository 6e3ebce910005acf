"""The ``colorize`` console command, run as a user would (a subprocess of the venv's script)."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize.cli import build_parser
from colorize.infer import STATUS_COLUMNS
from colorize.tsv import read_tsv
from colorize.models import ModelConfig, build_model

COLORIZE = Path(sys.executable).with_name("colorize")  # the console script installed beside python


def run(*args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLORIZE_DEVICE="cpu", OMP_NUM_THREADS="1")
    return subprocess.run([str(COLORIZE), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="unet", base_channels=4, depth=2)
    path = tmp_path_factory.mktemp("model") / "best.pt"
    torch.save(
        {"format_version": 1, "model_config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "epoch": 0}, path
    )
    return path


def photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 225, (h, w, 3), dtype=np.uint8)


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_help_mentions_every_option():
    assert COLORIZE.exists(), f"console script missing: {COLORIZE}"
    top = run("--help")
    assert top.returncode == 0 and "predict" in top.stdout and "evaluate" in top.stdout
    predict = run("predict", "--help")
    assert predict.returncode == 0
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["predict"]
    options = option_strings(sub)
    expected = {
        "--model",
        "--output",
        "--size",
        "--batch-size",
        "--device",
        "--workers",
        "--recursive",
        "--status",
        "--max-pixels",
        "--jpeg-quality",
        "--quiet",
    }
    assert expected <= options
    for opt in options:
        assert opt in predict.stdout, f"{opt} missing from 'colorize predict --help'"
    assert "INPUT" in predict.stdout and "auto" in predict.stdout and "cuda" in predict.stdout


def test_predict_colorizes_good_files_and_lists_bad_ones(tmp_path, checkpoint):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    Image.fromarray(photo(37, 53, 1)).save(src / "a.jpg", quality=95)
    Image.fromarray(photo(53, 37, 2)[..., 0]).save(src / "trip" / "b.png")  # grayscale
    full = io.BytesIO()
    Image.fromarray(photo(120, 160, 3)).save(full, format="JPEG")
    (src / "cut.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (src / "empty.png").write_bytes(b"")
    (src / "letter.jpg").write_text("Dear user, this is not a JPEG.\n")
    out = tmp_path / "out"

    res = run(
        "predict",
        "--model",
        checkpoint,
        "--output",
        out,
        "--size",
        "32",
        "--batch-size",
        "2",
        "--workers",
        "2",
        "--device",
        "cpu",
        "--recursive",
        src,
    )
    assert res.returncode == 0, res.stderr
    assert "colorized 2 of 5" in res.stdout and "3 failed" in res.stdout and str(out / "status.tsv") in res.stdout
    with Image.open(out / "a.jpg") as im:
        assert im.size == (53, 37) and im.mode == "RGB"
    with Image.open(out / "trip" / "b.png") as im:
        assert im.size == (37, 53) and im.mode == "RGB"

    rows = {Path(r["input"]).name: r for r in read_tsv(out / "status.tsv")}
    assert list(next(iter(rows.values()))) == list(STATUS_COLUMNS)
    assert rows["a.jpg"]["status"] == rows["b.png"]["status"] == "ok"
    assert "truncated" in rows["cut.jpg"]["reason"]
    assert "empty" in rows["empty.png"]["reason"]
    assert "not an image" in rows["letter.jpg"]["reason"]
    for name in ("cut.jpg", "empty.png", "letter.jpg"):
        assert rows[name]["status"] == "failed" and not (out / name).exists()
        assert name in res.stderr  # each failure is also named on the console


def test_predict_exit_codes(tmp_path, checkpoint):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    nothing = run("predict", "-m", checkpoint, "-o", tmp_path / "out", "--quiet", bad)
    assert nothing.returncode == 1 and "colorized 0 of 1" in nothing.stdout
    no_model = run("predict", "-m", tmp_path / "missing.pt", "-o", tmp_path / "out", bad)
    assert no_model.returncode == 2 and "missing.pt" in no_model.stderr
    no_input = run("predict", "-m", checkpoint, "-o", tmp_path / "out")
    assert no_input.returncode == 2
