"""End-to-end: the whole workflow (scan -> shards -> train -> evaluate -> grids -> colorize ->
report) on tiny generated data, its report opened in a real browser, then what reruns after
each kind of change.

One completed run is shared by the module; each rerun check works on its own copy of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest
import yaml

from browser import menu_entries, view_report
from colorize.tsv import read_tsv
from conftest import colour_photo, make_bad_images, make_good_images, save
from workflow_utils import (
    SNAKEMAKE,
    copy_workflow,
    planned_jobs,
    snakemake,
    tiny_config,
    write_config,
)

pytestmark = pytest.mark.slow

DATASET_FILES = 10  # good images generated below (+ bad ones)


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    """A finished run of the whole workflow, in a private copy of the workflow."""
    base = tmp_path_factory.mktemp("e2e")
    photos = base / "photos"
    make_good_images(photos, n=DATASET_FILES, size=(48, 64))
    make_bad_images(photos / "bad")
    scans = base / "scans"  # the user's grayscale photos to colorize, one broken
    save(scans / "old/scan1.png", colour_photo(53, 71, seed=7)[..., 0])
    save(scans / "scan2.jpg", colour_photo(40, 90, seed=8))
    (scans / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    work = copy_workflow(base / "work")
    # relative paths (from the working directory), so a copy of the whole run is a valid run
    config = tiny_config("../photos", colorize={"input_dir": "../scans"}, shipped_model=True)
    config["runtime"]["colorize_batch_size"] = 2
    write_config(work, config)
    snakemake(work)
    report = snakemake(work, "--report", "report.html")
    (base / "report.log").write_text(report.stdout + report.stderr)
    return base


def clone(completed, tmp_path):
    """A copy of the completed run (files, Snakemake metadata, timestamps) to change freely."""
    dst = tmp_path / "run"
    shutil.copytree(completed, dst, symlinks=True)
    cfg = yaml.safe_load((dst / "work/config.yaml").read_text())
    assert planned_jobs(dst / "work") == {}  # a moved run is still complete
    return dst, cfg


def test_whole_workflow_outputs(completed):
    work = completed / "work"
    res = work / "results/tiny"
    manifest = read_tsv(res / "manifest.tsv")
    assert len([r for r in manifest if r["status"] == "ok"]) == DATASET_FILES
    for model in ("ae", "unet"):
        hist = read_tsv(res / f"models/{model}/history.tsv")
        assert [int(r["epoch"]) for r in hist] == [1, 2]
        assert (res / f"models/{model}/loss_curve.png").stat().st_size > 1000
        summary = {r["method"]: r for r in read_tsv(res / f"eval/{model}/summary.tsv")}
        assert set(summary) == {model, "gray"}
        assert float(summary["gray"]["chroma_pred"]) == 0.0
        with h5py.File(next((res / "shards").glob("test-*.h5"))) as f:
            n_test = f["L"].shape[0]
        assert int(summary[model]["n_images"]) == n_test
        assert (res / f"eval/{model}/grid.png").stat().st_size > 1000
        status = {
            r["input"].rsplit("/", 1)[-1]: r
            for r in read_tsv(res / f"colorized/{model}/status.tsv")
        }
        assert status["broken.jpg"]["status"] != "ok" and status["scan2.jpg"]["status"] == "ok"
        assert (res / f"colorized/{model}/images/old/scan1.png").exists()
    html = (work / "report.html").read_text(errors="replace")
    for name in ("grid.png", "loss_curve.png", "summary.tsv", "per_image.tsv", "manifest.tsv"):
        assert name in html
    # every caption renders: no docutils warning (an empty ``{{ ... }}`` literal makes one)
    log = (completed / "report.log").read_text()
    assert "Report created" in log
    assert "(WARNING/" not in log and "(ERROR/" not in log, log[-3000:]


def test_the_default_run_also_evaluates_and_colorizes_with_the_shipped_model(completed):
    from colorize.shipped import SHIPPED

    res = completed / "work/results/tiny"
    assert (res / "models/shipped/best.pt").read_bytes() == SHIPPED.read_bytes()
    assert not (res / "models/shipped/history.tsv").exists()  # not trained here
    summary = {r["method"]: r for r in read_tsv(res / "eval/shipped/summary.tsv")}
    assert set(summary) == {"shipped", "gray"}
    assert float(summary["shipped"]["chroma_pred"]) > 0
    assert (res / "eval/shipped/grid.png").stat().st_size > 1000
    status = {
        r["input"].rsplit("/", 1)[-1]: r["status"]
        for r in read_tsv(res / "colorized/shipped/status.tsv")
    }
    assert status == {"scan1.png": "ok", "scan2.jpg": "ok", "broken.jpg": "failed"}
    assert "shipped" in (completed / "work/report.html").read_text(errors="replace")


SCREENSHOT_COPY = Path("/tmp/colorize-report-screenshot.png")  # where a person looks first


def test_the_report_in_a_browser_opens_on_the_answer(completed):
    """The report of the run in headless Chromium: its first screen asks and answers "did the
    colours beat gray", the table holds every model of the run and gray, the best model's grid
    loaded (a real image, not a broken one), every menu category opens from the landing page,
    and no JavaScript error or failed request is logged. The first screen is saved beside the
    run (and copied to /tmp/colorize-report-screenshot.png)."""
    work = completed / "work"
    screenshot = completed / "report-screenshot.png"
    view = view_report(work / "report.html", screenshot)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)

    assert view.errors == []
    first = view.headings[0]
    assert first[1] == "Did the colours beat gray?" and 0 <= first[2] < 900 / 3, view.headings
    res = work / "results/tiny"
    models = sorted(p.name for p in (res / "eval").iterdir())
    assert models == ["ae", "shipped", "unet"]
    gains = {m: float(next(r for r in read_tsv(res / f"eval/{m}/summary.tsv") if r["method"] == m)["psnr_minus_gray"])
             for m in models}  # fmt: skip
    best = max(gains, key=gains.get)
    assert view.answer.startswith(f"Best model: {best} ")
    in_table = {row[1] for row in view.table_rows if row and row[0] == "test split"}
    assert in_table == {*models, "gray"}
    width, height, complete = view.images[f"grid of model {best}"]
    assert complete and width > 0 and height > 0
    expected = ["1. Overview", "2. Data", "3. Training", "4. Evaluation"]
    assert sorted(view.categories) == expected
    assert all(name in view.menu for name in expected)
    assert sorted(view.category_pages) == expected  # each opened from the landing page's link
    for name, menu in view.category_pages.items():
        entries = menu_entries(view.categories[name])
        assert entries and all(entry in menu for entry in entries), (name, menu)
    assert menu_entries(view.categories["4. Evaluation"]) == ["ae", "unet", "shipped"]
    assert screenshot.stat().st_size > 10_000


def test_nothing_to_do_after_a_complete_run(completed):
    assert planned_jobs(completed / "work") == {}


def test_one_model_hyperparameter_retrains_only_that_model(completed, tmp_path):
    run, cfg = clone(completed, tmp_path)
    cfg["models"]["unet"]["lr"] = 0.002
    write_config(run / "work", cfg)
    jobs = planned_jobs(run / "work")
    assert jobs == {
        "train": 1,
        "evaluate": 1,
        "grid": 1,
        "colorize_folder": 1,
        "colorize_status": 1,
        "overview": 1,
        "all": 1,
    }, jobs


def test_image_size_rebuilds_shards_and_everything_downstream(completed, tmp_path):
    run, cfg = clone(completed, tmp_path)
    cfg["image_size"] = 48
    write_config(run / "work", cfg)
    jobs = planned_jobs(run / "work")
    assert jobs.get("shard") == 4 and jobs.get("manifest") == 1 and jobs.get("train") == 2
    assert (
        jobs.get("evaluate") == 3 and jobs.get("grid") == 3
    )  # two trained models and the shipped one


def test_resize_policy_rebuilds_shards(completed, tmp_path):
    run, cfg = clone(completed, tmp_path)
    cfg["resize_policy"] = "pad"
    write_config(run / "work", cfg)
    jobs = planned_jobs(run / "work")
    assert jobs.get("shard") == 4 and jobs.get("train") == 2


def test_adding_one_image_rebuilds_only_its_shard(completed, tmp_path):
    run, cfg = clone(completed, tmp_path)
    work = run / "work"
    save(run / "photos/new_photo.png", colour_photo(48, 64, seed=99))
    jobs = planned_jobs(work)
    assert jobs.get("scan") == 1
    # the shard set is only known after the scan: run it, then ask again
    snakemake(work, "--until", "scan")
    jobs = planned_jobs(work)
    assert jobs.get("shard") == 1, jobs
    scan = {r["relpath"]: r for r in read_tsv(work / "results/tiny/scan.tsv")}
    new = scan["new_photo.png"]
    snakemake(work)
    new_shard = work / f"results/tiny/shards/{new['split']}-{new['shard']}.h5"
    with h5py.File(new_shard) as f:
        assert "new_photo.png" in [s.decode() for s in f["relpath"][...]]
    assert planned_jobs(work) == {}


def test_code_change_in_one_script_reruns_that_step(completed, tmp_path):
    run, cfg = clone(completed, tmp_path)
    work = run / "work"
    script = work / "workflow/scripts/grid.py"
    script.write_text(script.read_text() + "\n# a change in the grid step's code\n")
    jobs = planned_jobs(work)
    assert jobs == {"grid": 3, "overview": 1, "all": 1}, jobs


def test_killed_training_resumes_from_its_checkpoint(completed, tmp_path):
    run, cfg = clone(completed, tmp_path)
    work = run / "work"
    cfg["models"] = {"unet": dict(cfg["models"]["unet"], epochs=400)}
    write_config(work, cfg)
    state = work / "results/tiny/models/unet/train_state/checkpoint.pt"
    proc = subprocess.Popen(
        [SNAKEMAKE, "--cores", "2", "--configfile", "config.yaml"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    t0 = time.time()
    while time.time() - t0 < 300:
        if (
            state.exists()
            and len(read_tsv(work / "results/tiny/models/unet/train_state/history.tsv")) >= 3
        ):
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("training never wrote its checkpoint")
    os.killpg(proc.pid, signal.SIGKILL)  # as a node crash or an out-of-time kill would
    proc.wait()
    import torch

    saved_epoch = torch.load(state, weights_only=True)["epoch"]
    snakemake(work, "--unlock")
    jobs = planned_jobs(work)
    assert jobs.get("train") == 1
    cfg["models"]["unet"]["epochs"] = saved_epoch + 2  # finish quickly
    write_config(work, cfg)
    snakemake(work)
    log = (work / "results/tiny/logs/train/unet.log").read_text()
    assert "resum" in log.lower() and str(saved_epoch) in log
    hist = read_tsv(work / "results/tiny/models/unet/history.tsv")
    assert [int(r["epoch"]) for r in hist] == list(range(1, saved_epoch + 3))
