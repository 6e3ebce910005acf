"""colorize.evaluate: model vs gray baseline over test shards and over a folder of photos, the comparison grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from colorize.colorspace import lab_to_rgb, normalize_ab, rgb_to_lab
from colorize.evaluate import (
    EXCLUDED_COLUMNS,
    comparison_grid,
    evaluate_folder,
    evaluate_folder_checkpoint,
    evaluate_shards,
)
from colorize.metrics import GRAY, PER_IMAGE_COLUMNS, PSNR_CAP, SUMMARY_COLUMNS
from colorize.plots import select_indices
from colorize.preprocess import PreprocessConfig, build_shard
from colorize.shards import ShardWriter, read_shard
from colorize.tsv import read_tsv
from helpers import make_bad_images, make_good_images, smooth_image, tiny_model

SIZE = 32  # of the photos through evaluate_folder

torch.set_num_threads(1)


# --- over test shards ----------------------------------------------------------------------------


@pytest.fixture
def eval_shards(tmp_path):
    """Two test shards of three smooth colourful 32x32 images each."""
    paths = []
    for s in range(2):
        path = tmp_path / f"test-{s:03d}.h5"
        with ShardWriter(path, image_size=32, split="test", compression="none") as w:
            for i in range(3):
                colourful = smooth_image(32, 32, 10 * s + i, cells=5, lo=30, hi=225)
                w.append(rgb_to_lab(colourful), f"s{s}/img{i}.png", f"{s}{i:063d}")
        paths.append(path)
    return paths


class OracleModel(nn.Module):
    """Returns the true ab of the images it is given, looked up by their L: a perfect colorizer."""

    def __init__(self, shards):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.table = {}
        for path in shards:
            sh = read_shard(path)
            for L, ab in zip(sh.L, sh.ab):
                self.table[L.tobytes()] = normalize_ab(
                    ab.astype(np.float32)
                )  # keyed by the stored float16 L

    def forward(self, x):
        L = (x[:, 0].numpy() * 50 + 50).astype(
            np.float16
        )  # denormalised, rounds back to the stored L
        return torch.from_numpy(np.stack([self.table[li.tobytes()] for li in L]))

    def ab_from_output(self, out):
        return out


def shard_images(shards) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for path in shards:
        sh = read_shard(path)
        out.update(
            {
                rel: (L.astype(np.float32), ab.astype(np.float32))
                for rel, L, ab in zip(sh.relpath, sh.L, sh.ab)
            }
        )
    return out


def test_evaluate_shards_model_and_gray_baseline(eval_shards, tmp_path):
    per_image, summary_path = tmp_path / "per_image.tsv", tmp_path / "summary.tsv"
    rows, summary = evaluate_shards(
        tiny_model(), eval_shards, per_image, summary_path, method="unet", batch_size=2
    )
    assert len(rows) == 12
    table = read_tsv(per_image)
    assert list(table[0]) == list(PER_IMAGE_COLUMNS)
    assert [r["method"] for r in table] == ["unet"] * 6 + [GRAY] * 6

    images = shard_images(eval_shards)
    for r in rows:
        if r["method"] == GRAY:
            L, ab = images[r["image"]]
            true, gray = lab_to_rgb(L, ab), lab_to_rgb(L, np.zeros_like(ab))
            assert r["chroma_pred"] == 0.0 and r["colorfulness_pred"] == 0.0
            assert r["psnr"] == pytest.approx(
                10 * math.log10(255**2 / np.mean((gray.astype(float) - true) ** 2))
            )
            assert r["chroma_true"] > 5 and r["colorfulness_true"] > 5

    sm = {r["method"]: r for r in read_tsv(summary_path)}
    assert list(read_tsv(summary_path)[0]) == list(SUMMARY_COLUMNS)
    assert int(sm["unet"]["n_images"]) == int(sm[GRAY]["n_images"]) == 6
    mean = {m: np.mean([r["psnr"] for r in rows if r["method"] == m]) for m in ("unet", GRAY)}
    assert float(sm["unet"]["psnr_minus_gray"]) == pytest.approx(
        mean["unet"] - mean[GRAY], abs=1e-4
    )
    assert float(sm[GRAY]["psnr_minus_gray"]) == 0.0
    assert summary[0]["method"] == "unet"


def test_a_perfect_model_scores_perfectly(eval_shards):
    rows, summary = evaluate_shards(
        OracleModel(eval_shards), eval_shards, method="oracle", batch_size=4
    )
    best = summary[0]
    assert (
        best["method"] == "oracle"
        and best["psnr"] == PSNR_CAP
        and best["ssim"] == pytest.approx(1.0)
    )
    assert best["auc"] == pytest.approx(1.0) and best["psnr_minus_gray"] > 10
    assert best["chroma_pred"] == pytest.approx(best["chroma_true"])


def test_comparison_grid(eval_shards, tmp_path):
    assert (
        select_indices(6, 4) == [0, 2, 3, 5]
        and select_indices(3, 10) == [0, 1, 2]
        and select_indices(0, 3) == []
    )
    png = comparison_grid(
        tiny_model(),
        eval_shards,
        tmp_path / "grid.png",
        n_rows=4,
        other_model=OracleModel(eval_shards),
        other_label="Oracle",
    )
    with Image.open(png) as im:
        w, h = im.size
    assert (
        w == 4 * 2 * 128 and h > w
    )  # 4 columns of 2-inch tiles at 128 dpi; 4 rows plus the titles


# --- over a folder of photos ---------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    good = make_good_images(root, n=4)  # jpg + png, two of them in sub/
    bad = make_bad_images(root / "bad")
    return root, good, bad


def test_evaluate_folder_scores_like_a_shard_and_lists_excluded_files(folder, tmp_path):
    root, good, bad = folder
    out = tmp_path / "out"
    rows, summary, excluded = evaluate_folder(
        tiny_model(), root, PreprocessConfig(image_size=SIZE, resize_policy="crop"), out / "per_image.tsv", out / "summary.tsv", out / "excluded.tsv",
        method="unet", batch_size=3,
    )  # fmt: skip

    # every good photo scored once for the model and once for gray; every bad file excluded with its reason
    assert sorted(r["image"] for r in rows if r["method"] == "unet") == sorted(good)
    assert sorted(r["image"] for r in rows if r["method"] == GRAY) == sorted(good)
    reasons = {e["image"]: e["reason"] for e in excluded}
    assert set(reasons) == {f"bad/{name}" for name in bad}
    for name, category in bad.items():
        assert reasons[f"bad/{name}"].startswith(category), (name, reasons[f"bad/{name}"])
    assert [list(r) for r in read_tsv(out / "excluded.tsv")[:1]] == [list(EXCLUDED_COLUMNS)]
    assert len(read_tsv(out / "excluded.tsv")) == len(bad)
    assert list(read_tsv(out / "per_image.tsv")[0]) == list(PER_IMAGE_COLUMNS)
    table = {r["method"]: r for r in read_tsv(out / "summary.tsv")}
    assert list(read_tsv(out / "summary.tsv")[0]) == list(SUMMARY_COLUMNS)
    assert int(table["unet"]["n_images"]) == int(table[GRAY]["n_images"]) == len(good)
    assert float(table[GRAY]["psnr_minus_gray"]) == 0.0 and summary[0]["method"] == "unet"

    # the same photos through the shard path (preprocess.build_shard) give the same numbers
    cfg = PreprocessConfig(image_size=SIZE, resize_policy="crop")
    manifest = [{"relpath": rel, "sha256": f"{i:064d}"} for i, rel in enumerate(good)]
    shard = tmp_path / "test-000.h5"
    build_shard(
        manifest,
        [root / rel for rel in good],
        shard,
        tmp_path / "test-000.tsv",
        "test",
        cfg,
        progress=False,
    )
    shard_rows, _ = evaluate_shards(tiny_model(), [shard], method="unet", batch_size=3)
    key = lambda r: (r["method"], r["image"])  # noqa: E731
    for a, b in zip(sorted(rows, key=key), sorted(shard_rows, key=key)):
        assert key(a) == key(b)
        for c in ("psnr", "ssim", "chroma_pred", "chroma_true", "auc"):
            assert a[c] == pytest.approx(b[c], rel=1e-3, abs=1e-3), (c, a["image"])


def test_evaluate_folder_of_only_bad_files_and_a_missing_folder(tmp_path):
    make_bad_images(tmp_path / "bad")
    rows, summary, excluded = evaluate_folder(
        tiny_model(),
        tmp_path / "bad",
        PreprocessConfig(image_size=SIZE),
        summary_path=tmp_path / "s.tsv",
    )
    assert rows == [] and summary == [] and len(excluded) > 5
    assert read_tsv(tmp_path / "s.tsv") == []  # header only
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_folder(tiny_model(), tmp_path / "nowhere", PreprocessConfig(image_size=SIZE))
    with pytest.raises(ValueError, match="reserved"):
        evaluate_folder(
            tiny_model(), tmp_path / "bad", PreprocessConfig(image_size=SIZE), method=GRAY
        )


def test_evaluate_folder_checkpoint_uses_the_checkpoints_size(folder, tmp_path):
    from colorize.checkpoint import FORMAT_VERSION

    root, good, _ = folder
    model = tiny_model()
    ckpt = {"format_version": FORMAT_VERSION, "image_size": 24, "model_config": model.cfg.to_dict(),
            "model": model.state_dict()}  # fmt: skip
    torch.save(ckpt, tmp_path / "best.pt")
    summary = evaluate_folder_checkpoint(
        tmp_path / "best.pt",
        root,
        tmp_path / "p.tsv",
        tmp_path / "s.tsv",
        tmp_path / "e.tsv",
        device="cpu",
    )
    assert summary[0]["method"] == "model" and summary[0]["n_images"] == len(good)


# The real workflow over `eval_sets` (a workflow test: it would sit with test_workflow_e2e.py).
@pytest.mark.slow
def test_workflow_evaluates_every_model_on_every_eval_set(tmp_path):
    """The real workflow with `eval_sets` and a zhang model: summaries per set, then nothing to do."""
    from helpers import colour_photo, save
    from workflow_utils import copy_workflow, planned_jobs, snakemake, tiny_config, write_config

    make_good_images(tmp_path / "photos", n=8, size=(48, 64))
    other = tmp_path / "other"
    make_good_images(other, n=3, size=(40, 56))
    save(other / "gray.png", colour_photo(40, 56, seed=9)[..., 0])
    (other / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    work = copy_workflow(tmp_path / "work")
    model = {"arch": "unet", "base_channels": 4, "depth": 2, "loss": "zhang", "temperature": 0.5, "epochs": 1,
             "batch_size": 4}  # fmt: skip
    config = tiny_config("../photos", models={"zh": model}, eval_sets={"other": "../other"})
    write_config(work, config)
    snakemake(work)

    out = work / "results/tiny/eval/zh/external/other"
    summary = {r["method"]: r for r in read_tsv(out / "summary.tsv")}
    assert int(summary["zh"]["n_images"]) == int(summary[GRAY]["n_images"]) == 3
    excluded = {r["image"]: r["reason"] for r in read_tsv(out / "excluded.tsv")}
    assert set(excluded) == {"broken.jpg", "gray.png"} and excluded["gray.png"].startswith(
        "grayscale"
    )
    assert len(read_tsv(out / "per_image.tsv")) == 6
    assert (work / "results/tiny/models/zh/train_state/ab_prior.pt").exists()
    assert planned_jobs(work) == {}
