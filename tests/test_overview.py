"""colorize.overview: the report's landing page, from the workflow's own tables (no Snakemake)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from colorize.metrics import SUMMARY_COLUMNS
from colorize.overview import (
    TEST_SPLIT,
    best_model,
    read_data_summary,
    render_overview,
    report_link,
    write_overview,
)
from colorize.tsv import write_tsv


def summary_file(path, model, gain, psnr_gray=20.0, vivid=0.4, columns=SUMMARY_COLUMNS):
    rows = [{"method": m, "n_images": 4, "psnr": psnr_gray + g, "ssim": 0.9, "colorfulness_pred": c,
             "colorfulness_true": 40.0, "chroma_pred": c / 2, "chroma_true": 20.0, "auc": 0.9, "psnr_minus_gray": g,
             "vivid_hits_image_mean": v, "vivid_hits_pooled": v}
            for m, g, c, v in ((model, gain, 30.0, vivid), ("gray", 0.0, 0.0, 0.0))]  # fmt: skip
    write_tsv(rows, path, columns)
    return str(path)


def data_summary(path):
    rows = [("total", "files", 9), ("split", "train", 5), ("split", "val", 1), ("split", "test", 2),
            ("excluded", "grayscale", 1)]  # fmt: skip
    write_tsv([dict(kind=k, name=n, count=c) for k, n, c in rows], path, ["kind", "name", "count"])
    return str(path)


def test_best_model_is_the_largest_gain_over_gray_on_the_test_split(tmp_path):
    from colorize.overview import read_evaluations

    rows = read_evaluations([("a", TEST_SPLIT, summary_file(tmp_path / "a.tsv", "a", -0.5)),
                             ("b", TEST_SPLIT, summary_file(tmp_path / "b.tsv", "b", 1.2)),
                             ("a", "other", summary_file(tmp_path / "ao.tsv", "a", 3.0))])  # fmt: skip
    assert best_model(rows) == "b"  # not a: its +3 dB is on another set
    assert [(r["set"], r["method"]) for r in rows] == [
        (TEST_SPLIT, "a"),
        (TEST_SPLIT, "gray"),
        (TEST_SPLIT, "b"),
        ("other", "a"),
        ("other", "gray"),
    ]  # gray once per set
    assert best_model([]) is None


def test_data_summary(tmp_path):
    data = read_data_summary(data_summary(tmp_path / "summary.tsv"))
    assert data == {
        "files": 9,
        "splits": {"train": 5, "val": 1, "test": 2},
        "excluded": {"grayscale": 1},
    }


def test_the_overview_leads_with_the_answer_and_embeds_the_best_grid(tmp_path):
    grids = {}
    for i, model in enumerate(("a", "b")):
        grids[model] = str(tmp_path / f"{model}.png")
        Image.fromarray(np.full((300, 2000, 3), 60 * i, np.uint8)).save(grids[model])
    evaluations = [("a", TEST_SPLIT, summary_file(tmp_path / "a.tsv", "a", -0.5)),
                   ("b", TEST_SPLIT, summary_file(tmp_path / "b.tsv", "b", 1.25)),
                   ("a", "bsds", summary_file(tmp_path / "ao.tsv", "a", 0.1)),
                   ("b", "bsds", summary_file(tmp_path / "bo.tsv", "b", -0.3))]  # fmt: skip
    out = write_overview(
        tmp_path / "overview.html", data_summary(tmp_path / "s.tsv"), evaluations, grids
    )
    text = out.read_text()
    assert text.isascii() and text.startswith('<div class="colorize-overview">')
    answer = re.search(r'<p class="answer">(.*?)</p>', text).group(1)
    assert (
        "<b>b</b>" in answer
        and "+1.25 dB (beats gray" in answer
        and "bsds: -0.30 dB (does not beat gray" in answer
    )
    assert text.index("answer") < text.index("<h3>Data</h3>") < text.index("Every model vs gray")
    assert "9 files: 8 in the shards, 1 excluded" in text
    assert text.count("<tr") == (1 + 3) + (1 + 1) + (
        1 + 2 * 3
    )  # splits, excluded, metrics: 2 sets x (a, b, gray)
    assert '<tr class="best">' in text and "baseline" in text
    uri = re.search(r'<img src="data:image/jpeg;base64,([^"]+)"', text).group(1)
    with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
        assert (
            im.width == 960 and im.getpixel((0, 0))[0] > 40
        )  # b's grid (value 60), shrunk to 960 px
    assert report_link(grids["b"], "b") in text  # the model's name opens its grid in the report


def test_names_are_escaped_and_links_survive_odd_paths():
    link = report_link('results/x y/it\'s "q"/grid.png', "<b>")
    assert "&lt;b&gt;" in link and " " not in link.split('"')[1]
    js = link.split('"')[1].replace("&#x27;", "'").replace("&quot;", '"')
    from urllib.parse import unquote

    assert unquote(js) == 'javascript:app.showResultInfo("results/x y/it\'s \\"q\\"/grid.png")'
    html = render_overview({"files": 0, "splits": {}, "excluded": {}}, [], [], {}, None)
    assert "No model was evaluated" in html


def test_the_metrics_table_shows_vivid_hits_and_a_dash_for_older_tables(tmp_path):
    old = [
        c for c in SUMMARY_COLUMNS if not c.startswith("vivid")
    ]  # a summary written before issue 20
    evaluations = [("a", TEST_SPLIT, summary_file(tmp_path / "a.tsv", "a", 0.5, vivid=0.573)),
                   ("b", "bsds", summary_file(tmp_path / "b.tsv", "b", 0.2, columns=old))]  # fmt: skip
    text = write_overview(
        tmp_path / "o.html", data_summary(tmp_path / "s.tsv"), evaluations, {}
    ).read_text()
    assert "vivid hits<br>(per image)" in text
    assert "<td>57 %</td></tr>" in text and "<td>0 %</td></tr>" in text  # a's row, and gray's
    assert "<td>-</td></tr>" in text  # b's table has no vivid columns
    assert "vivid hits 57 %" in re.search(r'<p class="answer">(.*?)</p>', text).group(1)


def test_the_weakest_source_of_the_best_model_is_named(tmp_path):
    from colorize.metrics import BY_SOURCE_COLUMNS

    rows = [{"source": src, "method": m, "n_images": 3, "psnr": 20 + g, "ssim": 0.9, "colorfulness_pred": 1.0,
             "colorfulness_true": 2.0, "chroma_pred": 10.0, "chroma_true": 20.0, "auc": 0.9, "psnr_minus_gray": g,
             "vivid_hits_image_mean": v, "vivid_hits_pooled": v}
            for src, g, v in (("flowers", 1.5, 0.6), ("faces", -0.4, 0.25)) for m in ("b",)]  # fmt: skip
    rows += [{**r, "method": "gray", "psnr_minus_gray": 0.0} for r in rows]
    by_source = write_tsv(rows, tmp_path / "by_source.tsv", BY_SOURCE_COLUMNS)
    evaluations = [("b", TEST_SPLIT, summary_file(tmp_path / "b.tsv", "b", 0.5))]
    text = write_overview(
        tmp_path / "o.html", data_summary(tmp_path / "s.tsv"), evaluations, {}, {"b": by_source}
    ).read_text()
    assert "Weakest source: <b>faces</b> (-0.40 dB vs gray, vivid hits 25 %" in text
    assert text.count('<td class="name">flowers</td>') == 2  # b and gray
    single = write_tsv(rows[:1], tmp_path / "one.tsv", BY_SOURCE_COLUMNS)
    text = write_overview(
        tmp_path / "o.html", data_summary(tmp_path / "s.tsv"), evaluations, {}, {"b": single}
    ).read_text()
    assert "Weakest source" not in text  # one source: nothing to compare
