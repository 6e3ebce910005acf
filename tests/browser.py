"""A Snakemake report opened in a real browser: headless Chromium (Debian's ``chromium``
package, which .ci/run installs) driven by Playwright (pinned in envs/requirements.txt), and
what a reader sees of it.

The report is a single HTML page whose JavaScript builds everything, so reading the file is not
enough to know that it works: the browser runs it, and this records what came out. No browser
is downloaded: Playwright drives the system's Chromium through ``executable_path``. A missing
browser fails the test that asked for one (it is part of the install, not an option).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

VIEWPORT = {"width": 1280, "height": 900}


def chromium_path() -> str:
    """The Chromium binary (``COLORIZE_CHROMIUM``, else ``chromium`` on PATH); fails the test,
    saying how to install it, when there is none."""
    path = os.environ.get("COLORIZE_CHROMIUM") or shutil.which("chromium")
    if not path or not Path(path).is_file():
        pytest.fail(
            "no Chromium to open the report in: install Debian's package "
            "(apt-get install -y chromium; .ci/run does) or set COLORIZE_CHROMIUM"
        )
    return path


@dataclass
class ReportView:
    """What the browser showed of a report: on the landing page, then per menu category."""

    headings: list[tuple[str, str, float]]  # (tag, text, top in px) of the landing's overview
    answer: str  # the text of the answer paragraph
    table_rows: list[list[str]]  # the cells of every row of the landing page's tables
    images: dict[str, tuple[int, int, bool]]  # alt -> (natural width, height, complete)
    menu: str  # the text of the menu on the landing page
    categories: dict  # the report's own category -> items data (its `categories` object)
    category_pages: dict[str, str] = field(default_factory=dict)  # category -> menu text
    errors: list[str] = field(default_factory=list)  # JavaScript errors and failed requests


def menu_entries(category: dict) -> list[str]:
    """What the report's menu lists for one category: its subcategories (a model's name, say),
    or its items when it has none (Snakemake files them under "Other")."""
    return category["Other"] if list(category) == ["Other"] else list(category)


def view_report(report: Path, screenshot: Path) -> ReportView:
    """Open ``report`` in headless Chromium, record the landing page (and a screenshot of its
    first screen at ``screenshot``), then follow the landing page's link to each category."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install -r envs/requirements.txt")
    url = Path(report).resolve().as_uri()
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path())
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on(
                "console",
                lambda m: errors.append(f"console error: {m.text}") if m.type == "error" else None,
            )
            page.on("requestfailed", lambda r: errors.append(f"failed request: {r.url[:200]}"))
            page.goto(url)
            page.wait_for_load_state("networkidle")
            desc = ".colorize-overview"  # the overview the landing page holds (overview.html)
            view = ReportView(
                headings=page.eval_on_selector_all(
                    f"{desc} h1, {desc} h2, {desc} h3",
                    "els => els.map(e => [e.tagName, e.innerText.trim(), e.getBoundingClientRect().top])",
                ),
                answer=page.inner_text(f"{desc} p.answer"),
                table_rows=page.eval_on_selector_all(
                    f"{desc} table tr",
                    "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))",
                ),
                images={
                    alt: (w, h, done)
                    for alt, w, h, done in page.eval_on_selector_all(
                        f"{desc} img",
                        "els => els.map(e => [e.alt, e.naturalWidth, e.naturalHeight, e.complete])",
                    )
                },
                menu=page.inner_text("nav"),
                categories=page.evaluate("() => categories"),
                errors=errors,
            )
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
            links = page.eval_on_selector_all(
                "a[href^='javascript:app.showCategory']",
                "els => els.map(e => [e.innerText.trim(), e.getAttribute('href')])",
            )
            for name, href in links:
                page.goto(url)
                page.wait_for_load_state("networkidle")
                page.locator(f'a[href="{href}"]').first.click()
                # the menu then lists the category's entries: wait for the first one
                page.wait_for_function(
                    "entry => document.querySelector('nav').innerText.includes(entry)",
                    arg=(menu_entries(view.categories.get(name) or {}) or [name])[0],
                    timeout=10_000,
                )
                view.category_pages[name] = page.inner_text("nav")
        finally:
            browser.close()
    return view
