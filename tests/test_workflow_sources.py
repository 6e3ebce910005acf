"""End-to-end (issue 20): a dataset of several source folders through the whole workflow, once.

Two folders as one dataset (``dataset.source`` a mapping): the photos are named <source>/...,
a photo found in both folders and a grayscale one are excluded by the pipeline, the split is
made per source, and the evaluation and the overview have a row per source.
"""

from __future__ import annotations

import shutil

import pytest

from colorize.tsv import read_tsv
from conftest import colour_photo, save
from workflow_utils import copy_workflow, planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow


def test_two_sources_as_one_dataset(tmp_path):
    for i in range(8):
        save(tmp_path / f"land/p{i}.png", colour_photo(40, 48, seed=i))
    for i in range(6):
        save(tmp_path / f"elsewhere/objects/sub/q{i}.png", colour_photo(44, 40, seed=20 + i))
    shutil.copyfile(
        tmp_path / "land/p0.png", tmp_path / "elsewhere/objects/copy.png"
    )  # in both folders
    save(tmp_path / "elsewhere/objects/gray.png", colour_photo(40, 40, seed=40)[..., 0])
    work = copy_workflow(tmp_path / "work")
    config = tiny_config("unused", split={"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0})
    config["dataset"]["source"] = {"land": "../land", "objects": "../elsewhere/objects"}
    config["models"] = {
        "unet": {"arch": "unet", "base_channels": 4, "depth": 2, "epochs": 1, "batch_size": 4}
    }
    config["run_models"] = ["unet"]
    write_config(work, config)
    snakemake(work)
    res = work / "results/tiny"
    manifest = {r["relpath"]: r for r in read_tsv(res / "manifest.tsv")}
    assert len(manifest) == 8 + 6 + 2
    assert manifest["objects/copy.png"]["status"] == "duplicate (same sha256 as land/p0.png)"
    assert manifest["objects/gray.png"]["status"].startswith("grayscale")
    for source, n in (("land", 8), ("objects", 6)):
        splits = sorted(
            r["split"]
            for k, r in manifest.items()
            if k.startswith(source + "/") and r["status"] == "ok"
        )
        assert (
            len(splits) == n and splits.count("test") == round(n * 0.2) and splits.count("val") >= 1
        )
    by_source = read_tsv(res / "eval/unet/by_source.tsv")
    assert [(r["source"], r["method"]) for r in by_source] == [
        ("land", "unet"),
        ("land", "gray"),
        ("objects", "unet"),
        ("objects", "gray"),
    ]
    summary = {r["method"]: r for r in read_tsv(res / "eval/unet/summary.tsv")}
    assert int(summary["unet"]["n_images"]) == sum(
        int(r["n_images"]) for r in by_source if r["method"] == "unet"
    )
    assert (
        float(summary["gray"]["vivid_hits_image_mean"]) == 0.0
        and summary["unet"]["vivid_hits_pooled"] != ""
    )
    weakest = min(
        (r for r in by_source if r["method"] == "unet"), key=lambda r: float(r["psnr_minus_gray"])
    )
    assert f"Weakest source: <b>{weakest['source']}</b>" in (res / "overview.html").read_text()
    assert planned_jobs(work) == {}  # nothing left to do
