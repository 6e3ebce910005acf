"""The report's landing page: the answer first (did the colours beat gray, which model is best,
what do its colours look like), then the data behind it.

``write_overview`` reads the workflow's own tables (``summary.tsv`` of the data stage, every
model's evaluation summaries on the test split and on each ``eval_sets`` folder) and writes
one self-contained HTML fragment: ASCII only, styles scoped to ``.colorize-overview``, the best
model's grid embedded as a JPEG data URI. ``snakemake --report`` shows it both on its landing
page (``workflow/report/workflow.rst`` includes the file) and as the item of its "Overview"
category. Links to other report items use the report's own ``app.showResultInfo`` (they work
on the landing page; inside the category's frame they do nothing).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from urllib.parse import quote

from .files import atomic_write_text
from .metrics import GRAY, weakest_source
from .tsv import read_tsv

TEST_SPLIT = "test split"  # the name of the in-pipeline test split in the tables
THUMBNAIL_WIDTH = 960  # px: the embedded grid (the full-size grid is one click away)


def read_data_summary(summary_tsv) -> dict:
    """``summary.tsv`` (kind, name, count) -> {"files": n, "splits": {...}, "excluded": {...}}."""
    data = {"files": 0, "splits": {}, "excluded": {}}
    for row in read_tsv(summary_tsv):
        count = int(row["count"])
        if row["kind"] == "total":
            data["files"] = count
        elif row["kind"] == "split":
            data["splits"][row["name"]] = count
        elif row["kind"] == "excluded":
            data["excluded"][row["name"]] = count
    return data


def read_evaluations(summaries: list[tuple[str, str, str]]) -> list[dict]:
    """(model, set, summary.tsv) triples -> one row per (set, method): the model's row of each
    file, and the gray baseline's once per set (from the first file of that set)."""
    rows, gray_seen = [], set()
    for _model, evalset, path in summaries:
        for row in read_tsv(path):
            method = row["method"]
            if method == GRAY and evalset in gray_seen:
                continue
            if method == GRAY:
                gray_seen.add(evalset)
            values = {k: float(v) for k, v in row.items() if k != "method" and v != ""}
            rows.append({"set": evalset, "method": method, "is_gray": method == GRAY, **values})
    return rows


def best_model(rows: list[dict], evalset: str = TEST_SPLIT) -> str | None:
    """The model with the largest PSNR gain over gray on ``evalset`` (the test split)."""
    candidates = [r for r in rows if r["set"] == evalset and not r["is_gray"]]
    return max(candidates, key=lambda r: r["psnr_minus_gray"])["method"] if candidates else None


def thumbnail_data_uri(png_path, max_width: int = THUMBNAIL_WIDTH) -> str:
    """A grid PNG as a JPEG data URI, at most ``max_width`` pixels wide."""
    from PIL import Image

    with Image.open(png_path) as im:
        im = im.convert("RGB")
        if im.width > max_width:
            im = im.resize(
                (max_width, round(im.height * max_width / im.width)), Image.Resampling.LANCZOS
            )
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def report_link(path, text: str) -> str:
    """An ``<a>`` that opens the report item ``path`` (as Snakemake's own result links do)."""
    js = "javascript:app.showResultInfo(" + quote(json.dumps(str(path)), safe="") + ")"
    return f'<a href="{html.escape(js)}">{html.escape(text)}</a>'


# The last two rules fit the page to Snakemake 9's report template when the page is its landing
# description: top-aligned (a tall description is centred, its top cut off) and wider than the
# template's 32rem column. They match nothing elsewhere, so another template only loses them.
_STYLE = """
.colorize-overview{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:14px;line-height:1.4;max-width:60rem}
.colorize-overview td.name{white-space:nowrap}
.colorize-overview h2{font-size:1.35em;margin:.3em 0 .4em}
.colorize-overview h3{font-size:1.1em;margin:1em 0 .3em}
.colorize-overview p{margin:.3em 0}
.colorize-overview table{border-collapse:collapse;margin:.3em 1.2em .6em 0;font-size:13px;width:auto}
.colorize-overview table.side{display:inline-table;vertical-align:top}
.colorize-overview th,.colorize-overview td{border:1px solid #ccc;padding:2px 7px;text-align:right}
.colorize-overview th{background:#f2f2f2}
.colorize-overview td.name,.colorize-overview th.name{text-align:left}
.colorize-overview tr.gray td{color:#666;font-style:italic}
.colorize-overview tr.best td{font-weight:bold}
.colorize-overview .gain{color:#067a06}.colorize-overview .loss{color:#b30000}
.colorize-overview .answer{font-size:1.1em;padding:.4em .6em;background:#f5f8ff;border-left:4px solid #3b6fd8}
.colorize-overview img{max-width:100%;height:auto;border:1px solid #ddd}
div.overflow-auto:has(.colorize-overview){align-items:flex-start}
.prose:has(.colorize-overview){max-width:48rem}
"""


def _signed(value: float) -> str:
    cls = "gain" if value > 0 else "loss" if value < 0 else ""
    return f'<span class="{cls}">{value:+.2f}</span>'


def _pct(pred: float, true: float) -> str:
    return f"{100 * pred / true:.0f} %" if true else "-"


def _share(value) -> str:
    """A 0..1 share as a percentage; '-' when absent (an older table) or NaN (no vivid pixel)."""
    return "-" if value is None or value != value else f"{100 * value:.0f} %"


def _answer(rows: list[dict], sets: list[str], best: str | None) -> str:
    if best is None:
        return '<p class="answer">No model was evaluated in this run.</p>'
    parts = []
    for evalset in sets:
        row = next((r for r in rows if r["set"] == evalset and r["method"] == best), None)
        if row is not None:
            verdict = "beats gray" if row["psnr_minus_gray"] > 0 else "does not beat gray"
            parts.append(
                f"{html.escape(evalset)}: {row['psnr_minus_gray']:+.2f} dB ({verdict}, "
                f"{_pct(row['chroma_pred'], row['chroma_true'])} of the true chroma, "
                f"vivid hits {_share(row.get('vivid_hits_image_mean'))}, "
                f"{int(row['n_images'])} photos)"
            )
    return (
        f'<p class="answer">Best model: <b>{html.escape(best)}</b> (largest PSNR gain over leaving '
        f"the photo gray on the test split). {'; '.join(parts)}.</p>"
    )


def _data_section(data: dict) -> str:
    used = sum(data["splits"].values())
    excluded = sum(data["excluded"].values())
    splits = "".join(
        f'<tr><td class="name">{html.escape(k)}</td><td>{v}</td></tr>'
        for k, v in data["splits"].items()
    )
    reasons = "".join(
        f'<tr><td class="name">{html.escape(k)}</td><td>{v}</td></tr>'
        for k, v in sorted(data["excluded"].items(), key=lambda kv: -kv[1])
    )
    out = [
        f"<h3>Data</h3><p>{data['files']} files: {used} in the shards, {excluded} excluded "
        "(every file with its status: manifest.tsv).</p>",
        f'<table class="side"><tr><th class="name">split</th><th>images</th></tr>{splits}</table>',
    ]
    if reasons:
        out.append(
            f'<table class="side"><tr><th class="name">excluded because</th><th>files</th></tr>'
            f"{reasons}</table>"
        )
    return "".join(out)


def _metrics_table(rows: list[dict], sets: list[str], best: str | None, grids: dict) -> str:
    head = (
        '<tr><th class="name">photos</th><th class="name">model</th><th>n</th><th>PSNR (dB)</th>'
        "<th>vs gray (dB)</th><th>SSIM</th><th>colourfulness</th><th>chroma<br>(% of true)</th>"
        "<th>vivid hits<br>(per image)</th></tr>"
    )
    body = []
    for evalset in sets:
        in_set = [r for r in rows if r["set"] == evalset]
        in_set.sort(key=lambda r: (r["is_gray"], -r.get("psnr_minus_gray", 0.0)))
        for r in in_set:
            name = html.escape(r["method"])
            if r["method"] in grids:
                name = report_link(grids[r["method"]], r["method"])
            cls = "gray" if r["is_gray"] else "best" if r["method"] == best else ""
            body.append(
                f'<tr class="{cls}"><td class="name">{html.escape(evalset)}</td><td class="name">{name}</td>'
                f"<td>{int(r['n_images'])}</td><td>{r['psnr']:.2f}</td>"
                f"<td>{'baseline' if r['is_gray'] else _signed(r['psnr_minus_gray'])}</td>"
                f"<td>{r['ssim']:.3f}</td><td>{r['colorfulness_pred']:.1f} / {r['colorfulness_true']:.1f}</td>"
                f"<td>{_pct(r['chroma_pred'], r['chroma_true'])}</td><td>{_share(r.get('vivid_hits_image_mean'))}</td></tr>"
            )
    return (
        f"<h3>Every model vs gray</h3><table>{head}{''.join(body)}</table>"
        "<p>PSNR and SSIM on 8-bit RGB against the true colours; gray = the photo left gray (ab = 0); "
        "colourfulness (Hasler-Suesstrunk) predicted / true; chroma = mean predicted / mean true Lab "
        "chroma; vivid hits = of the pixels whose true chroma is at least 20, the share predicted within 20 "
        "(ab) of the truth, mean over the photos that have such pixels (gray scores 0 %). "
        "A model name opens its grid.</p>"
    )


def _by_source_section(by_source: list[dict], best: str) -> str:
    """The best model and gray on each source's test photos, and the weakest source named."""
    mine = [r for r in by_source if r["method"] in (best, GRAY)]
    weak = weakest_source(by_source, best)
    if weak is None or len({r["source"] for r in mine}) < 2:
        return ""
    body = "".join(
        f'<tr class="{"gray" if r["method"] == GRAY else ""}"><td class="name">{html.escape(r["source"])}</td>'
        f'<td class="name">{html.escape(r["method"])}</td><td>{int(float(r["n_images"]))}</td>'
        f"<td>{'baseline' if r['method'] == GRAY else _signed(float(r['psnr_minus_gray']))}</td>"
        f"<td>{_pct(float(r['chroma_pred']), float(r['chroma_true']))}</td>"
        f"<td>{_share(_float(r.get('vivid_hits_image_mean')))}</td></tr>"
        for r in mine
    )
    return (
        f"<h3>By source (test split)</h3><p>Weakest source: <b>{html.escape(weak['source'])}</b> "
        f"({float(weak['psnr_minus_gray']):+.2f} dB vs gray, vivid hits "
        f"{_share(_float(weak.get('vivid_hits_image_mean')))}; the smallest gain over gray of {html.escape(best)}).</p>"
        '<table><tr><th class="name">source</th><th class="name">model</th><th>n</th><th>vs gray (dB)</th>'
        f"<th>chroma<br>(% of true)</th><th>vivid hits<br>(per image)</th></tr>{body}</table>"
    )


def _float(value):
    return None if value in (None, "") else float(value)


def render_overview(
    data: dict,
    rows: list[dict],
    sets: list[str],
    grids: dict,
    grid_uri: str | None,
    by_source: dict | None = None,
) -> str:
    """The overview fragment (HTML, ASCII only) from the parts ``write_overview`` reads;
    ``by_source``: model -> its rows of ``by_source.tsv`` (a section when there are several sources)."""
    best = best_model(rows)
    out = [
        f'<div class="colorize-overview"><style>{_STYLE}</style>',
        "<h2>Did the colours beat gray?</h2>",
        _answer(rows, sets, best),
        _data_section(data),
    ]
    if rows:
        out.append(_metrics_table(rows, sets, best, grids))
    if best is not None and (by_source or {}).get(best):
        out.append(_by_source_section(by_source[best], best))
    if best is not None and grid_uri:
        out.append(
            f"<h3>The best model's colours ({html.escape(best)}): Grayscale | Predicted | Ground truth</h3>"
            f"<p>{report_link(grids[best], 'open the full-size grid')}</p>"
            f'<img src="{grid_uri}" alt="grid of model {html.escape(best)}">'
        )
    out.append("</div>\n")
    return "".join(out).encode("ascii", "xmlcharrefreplace").decode("ascii")


def write_overview(
    out,
    summary_tsv,
    evaluations: list[tuple[str, str, str]],
    grids: dict,
    by_source: dict | None = None,
) -> Path:
    """Read the run's tables and write the overview to ``out`` (atomically).

    ``evaluations``: (model, set name, summary.tsv) with set ``TEST_SPLIT`` for the test split;
    ``grids``: model -> its grid PNG (the best one is embedded, every one is linked);
    ``by_source``: model -> its ``by_source.tsv`` (the weakest source of the best model is named).
    """
    rows = read_evaluations(evaluations)
    sets = list(dict.fromkeys(evalset for _, evalset, _ in evaluations))
    best = best_model(rows)
    grid_uri = thumbnail_data_uri(grids[best]) if best in grids else None
    tables = {model: read_tsv(path) for model, path in (by_source or {}).items()}
    return atomic_write_text(
        out, render_overview(read_data_summary(summary_tsv), rows, sets, grids, grid_uri, tables)
    )
