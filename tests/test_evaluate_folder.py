"""evaluate_folder: a folder of photos scored exactly as the same photos in a test shard."""

from __future__ import annotations

import pytest
import torch

from conftest import make_bad_images, make_good_images
from colorize.tsv import read_tsv
from colorize.evaluate import EXCLUDED_COLUMNS, evaluate_folder, evaluate_folder_checkpoint, evaluate_shards
from colorize.metrics import GRAY, PER_IMAGE_COLUMNS, SUMMARY_COLUMNS
from colorize.models import ModelConfig, build_model
from colorize.preprocess import PreprocessConfig, build_shard

torch.set_num_threads(1)
SIZE = 32


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="unet", base_channels=4, depth=2)).eval()


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
    build_shard(manifest, [root / rel for rel in good], shard, tmp_path / "test-000.tsv", "test", cfg, progress=False)
    shard_rows, _ = evaluate_shards(tiny_model(), [shard], method="unet", batch_size=3)
    key = lambda r: (r["method"], r["image"])  # noqa: E731
    for a, b in zip(sorted(rows, key=key), sorted(shard_rows, key=key)):
        assert key(a) == key(b)
        for c in ("psnr", "ssim", "chroma_pred", "chroma_true", "auc"):
            assert a[c] == pytest.approx(b[c], rel=1e-3, abs=1e-3), (c, a["image"])


def test_evaluate_folder_of_only_bad_files_and_a_missing_folder(tmp_path):
    make_bad_images(tmp_path / "bad")
    rows, summary, excluded = evaluate_folder(tiny_model(), tmp_path / "bad", PreprocessConfig(image_size=SIZE), summary_path=tmp_path / "s.tsv")
    assert rows == [] and summary == [] and len(excluded) > 5
    assert read_tsv(tmp_path / "s.tsv") == []  # header only
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_folder(tiny_model(), tmp_path / "nowhere", PreprocessConfig(image_size=SIZE))
    with pytest.raises(ValueError, match="reserved"):
        evaluate_folder(tiny_model(), tmp_path / "bad", PreprocessConfig(image_size=SIZE), method=GRAY)


def test_evaluate_folder_checkpoint_uses_the_checkpoints_size(folder, tmp_path):
    from colorize.checkpoint import FORMAT_VERSION

    root, good, _ = folder
    model = tiny_model()
    ckpt = {"format_version": FORMAT_VERSION, "image_size": 24, "model_config": model.cfg.to_dict(),
            "model": model.state_dict()}  # fmt: skip
    torch.save(ckpt, tmp_path / "best.pt")
    summary = evaluate_folder_checkpoint(
        tmp_path / "best.pt", root, tmp_path / "p.tsv", tmp_path / "s.tsv", tmp_path / "e.tsv", device="cpu"
    )
    assert summary[0]["method"] == "model" and summary[0]["n_images"] == len(good)


@pytest.mark.slow
def test_workflow_evaluates_every_model_on_every_eval_set(tmp_path):
    """The real workflow with `eval_sets` and a zhang model: summaries per set, then nothing to do."""
    from conftest import colour_photo, save
    from workflow_utils import copy_workflow, planned_jobs, snakemake, tiny_config, write_config

    make_good_images(tmp_path / "photos", n=8, size=(48, 64))
    other = tmp_path / "other"
    make_good_images(other, n=3, size=(40, 56))
    save(other / "gray.png", colour_photo(40, 56, seed=9)[..., 0])
    (other / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    work = copy_workflow(tmp_path / "work")
    model = {"arch": "unet", "base_channels": 4, "depth": 2, "loss": "zhang", "temperature": 0.5, "epochs": 1,
             "batch_size": 4, "num_workers": 0, "log_interval": 0}  # fmt: skip
    config = tiny_config("../photos", models={"zh": model}, eval_sets={"other": "../other"})
    write_config(work, config)
    snakemake(work)

    out = work / "results/tiny/eval/zh/external/other"
    summary = {r["method"]: r for r in read_tsv(out / "summary.tsv")}
    assert int(summary["zh"]["n_images"]) == int(summary[GRAY]["n_images"]) == 3
    excluded = {r["image"]: r["reason"] for r in read_tsv(out / "excluded.tsv")}
    assert set(excluded) == {"broken.jpg", "gray.png"} and excluded["gray.png"].startswith("grayscale")
    assert len(read_tsv(out / "per_image.tsv")) == 6
    assert (work / "results/tiny/models/zh/train_state/ab_prior.pt").exists()
    assert planned_jobs(work) == {}
