"""The report leads with the answer (issue 12), and machine knobs rerun nothing (issue 11).

One tiny finished run (two models, one eval set) is shared by the module: its overview page,
the report built from it (whose landing page must hold the overview), and what a change of the
``runtime:`` section plans on it.
"""

from __future__ import annotations

import json
import re

import pytest

from colorize.tsv import read_tsv
from conftest import make_bad_images, make_good_images
from workflow_utils import copy_workflow, planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    make_good_images(base / "photos", n=10, size=(48, 64))
    make_bad_images(base / "photos/bad")
    make_good_images(base / "other", n=3, size=(40, 56))
    work = copy_workflow(base / "work")
    config = tiny_config("../photos", eval_sets={"other": "../other"})
    config["runtime"]["models"] = {"unet": {"log_interval": 1}}  # a per-model machine knob
    write_config(work, config)
    snakemake(work)
    snakemake(work, "--report", "report.html")
    return work, config


def landing(report_html: str) -> str:
    """The report's landing description (the workflow-level `report:` text, rendered)."""
    return json.loads(re.search(r"var workflow_desc = (\".*?\");\n", report_html, re.S).group(1))


def test_the_overview_answers_first(finished):
    work, config = finished
    res = work / "results/tiny"
    html = (res / "overview.html").read_text()
    gains = {m: float(next(r for r in read_tsv(res / f"eval/{m}/summary.tsv") if r["method"] == m)["psnr_minus_gray"])
             for m in config["models"]}  # fmt: skip
    best = max(gains, key=gains.get)
    answer = re.search(r'<p class="answer">(.*?)</p>', html).group(1)
    assert f"Best model: <b>{best}</b>" in answer and f"test split: {gains[best]:+.2f} dB" in answer
    counts = {(r["kind"], r["name"]): int(r["count"]) for r in read_tsv(res / "summary.tsv")}
    used = sum(n for (kind, _), n in counts.items() if kind == "split")
    assert f"{counts['total', 'files']} files: {used} in the shards" in html
    for (kind, name), n in counts.items():
        if kind == "excluded":
            assert f'<td class="name">{name}</td><td>{n}</td>' in html
    for evalset in ("test split", "other"):
        for method in (*config["models"], "gray"):
            assert re.search(
                rf'<td class="name">{evalset}</td><td class="name">(<a [^>]*>)?{method}(</a>)?</td>',
                html,
            )
    assert html.count('<img src="data:image/jpeg;base64,') == 1 and f"grid of model {best}" in html


def test_the_report_opens_on_the_overview(finished):
    work, _ = finished
    report = (work / "report.html").read_text()
    desc = landing(report)
    overview = (work / "results/tiny/overview.html").read_text()
    assert overview.strip() in desc  # the landing page holds the whole overview
    assert desc.index("Did the colours beat gray?") < desc.index("Everything else")
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", report, re.S).group(1))
    assert sorted(categories)[0] == "1. Overview"  # first in the menu
    assert categories["1. Overview"] == {"Other": ["results/tiny/overview.html"]}
    for category in categories:  # links to the rest
        assert f"javascript:app.showCategory('{category.replace(' ', '%20')}')" in desc
    # the model names link to their grids, which are report items
    for path in re.findall(r"showResultInfo\(%22(.*?)%22\)", overview):
        assert path.replace("%2F", "/") in report


def test_runtime_knobs_reach_the_jobs(finished):
    work, _ = finished
    assert "log_interval=1," in (work / "results/tiny/logs/train/unet.log").read_text()
    assert "log_interval=0," in (work / "results/tiny/logs/train/ae.log").read_text()


def test_changing_runtime_knobs_reruns_nothing(finished):
    work, config = finished
    try:
        changed = dict(
            config,
            runtime={
                "num_workers": 1,
                "in_memory": True,
                "log_interval": 7,
                "colorize_batch_size": 3,
                "models": {"ae": {"num_workers": 2}},
            },
        )
        write_config(work, changed)
        assert planned_jobs(work) == {}
        model_change = dict(
            config, models=dict(config["models"], ae=dict(config["models"]["ae"], lr=0.002))
        )
        write_config(work, model_change)
        assert planned_jobs(work) == {"train": 1, "evaluate": 1, "evaluate_external": 1, "grid": 1, "overview": 1,
                                      "all": 1}  # fmt: skip
    finally:
        write_config(work, config)
