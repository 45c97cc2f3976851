"""The web pages in a real browser (Playwright driving Debian's chromium) against a real server:
upload → tagged paragraphs → paragraph search → a correction that survives a restart → export as
gold files that `fazhi corpus build` takes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE
from fazhi.serving.loadtest import running_server

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SAMPLE_2024 = ROOT / "fazhi" / "data" / "sample_report_2024.txt"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.fail("chromium is missing: `make setup` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def test_review_a_report_in_the_browser(browser, tmp_path):
    shots = Path(os.environ.get("FAZHI_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    work = tmp_path / "srv"
    work.mkdir()
    with running_server("rules", work=work, api_keys="ui-key") as server:
        page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="zh-CN")
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.base + "/")
        page.fill("#api-key", "ui-key")
        page.click("#key-form button")
        for report in (SAMPLE, SAMPLE_2024):
            page.goto(server.base + "/")
            page.set_input_files("#upload-file", str(report))
            page.click("#upload-form button")
            page.wait_for_url("**/reports/*", timeout=60_000)
        paragraphs = page.locator(".para.body")
        assert paragraphs.count() > 10
        assert page.locator(".para.body .tag").first.inner_text().strip()
        assert "摘要" in page.inner_text("aside.digest")
        page.screenshot(path=str(shots / "report.png"), full_page=False)
        report_url = page.url

        # two corrections: the category of a paragraph the model flags as a shortcoming (its flag must
        # stay as it is), and the shortcoming flag of another
        flagged = page.locator(".para.body[data-shortcoming=true]")
        assert flagged.count() > 0 and flagged.first.locator(".badge.warn").count() == 1
        assert flagged.first.locator("input[name=shortcoming]").is_checked()
        first = flagged.first
        first_id = first.get_attribute("id")
        model_category = first.locator("select[name=category]").input_value()
        new_category = "supervision" if model_category != "supervision" else "enforcement"
        first.hover()
        first.locator("select[name=category]").select_option(new_category)
        with page.expect_navigation():
            first.locator("form.correct button").click()
        second = page.locator(".para.body[data-shortcoming=false]").first
        second_id = second.get_attribute("id")
        second.hover()
        box = second.locator("input[name=shortcoming]")
        flag = not box.is_checked()
        box.set_checked(flag)
        with page.expect_navigation():
            second.locator("form.correct button").click()
        page.reload()
        assert page.locator(".para.corrected").count() == 2
        fixed = page.locator(f"[id='{first_id}']")
        assert f"cat-{new_category}" in fixed.get_attribute("class") and "已更正" in fixed.inner_text()
        assert fixed.locator(".badge.warn").count() == 1  # still a shortcoming

        page.goto(server.base + "/search")
        page.select_option("select[name=category]", "enforcement")
        with page.expect_navigation():
            page.click("#search-form button")
        rows = page.locator("#hits tbody tr")
        assert rows.count() > 0 and all("cat-enforcement" in (rows.nth(i).get_attribute("class") or "")
                                        for i in range(rows.count()))
        page.screenshot(path=str(shots / "search.png"))
        page.goto(server.base + "/overview")
        assert page.locator("img[alt^='地区']").evaluate("i => i.complete && i.naturalWidth > 0")
        page.screenshot(path=str(shots / "overview.png"), full_page=True)
        page.goto(server.base + "/")
        assert page.locator("#reports tbody tr").count() == 2
        page.screenshot(path=str(shots / "reports.png"))
        assert errors == []

    # corrections survive a restart of the server
    with running_server("rules", work=work, api_keys="ui-key") as server:
        page = browser.new_page()
        page.goto(report_url.replace(report_url.split("/reports/")[0], server.base))
        assert page.locator(".para.corrected").count() == 2

    gold = tmp_path / "gold"
    done = subprocess.run([sys.executable, "-m", "fazhi.cli", "corpus", "export-corrections", "--db",
                           str(work / "server.db"), "--out", str(gold)], capture_output=True, text=True)
    assert done.returncode == 0 and "2 labels corrected" in done.stderr, done.stderr
    (exported,) = gold.glob("*.jsonl")
    rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert {"doc", "i", "text", "kind", "category", "shortcoming"} == set(rows[0])
    by_position = {f"p{r['i'] + 1}": r for r in rows}
    assert by_position[first_id]["category"] == new_category and by_position[first_id]["shortcoming"] is True
    assert by_position[second_id]["shortcoming"] is flag
    built = subprocess.run([sys.executable, "-m", "fazhi.cli", "corpus", "build", str(gold), "--validation", "0", "--out",
                            str(tmp_path / "dd")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    stats = subprocess.run([sys.executable, "-m", "fazhi.cli", "corpus", "stats", str(tmp_path / "dd"), "--json"],
                           capture_output=True, text=True)
    assert "human:gold" in stats.stdout
