"""Year-over-year comparison: matching by meaning on a labelled pair set, the invariants a
supervisor relies on, and one JSON from the CLI and the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import ROOT, SAMPLE
from fazhi.analysis import Analyzer
from fazhi.models.compare import SAME_PROBLEM, Side, compare
from fazhi.settings import settings

pytestmark = pytest.mark.slow
SAMPLE_2024 = ROOT / "fazhi" / "data" / "sample_report_2024.txt"
PAIRS = Path(__file__).parent / "data" / "shortcoming_pairs.jsonl"


@pytest.fixture(scope="module")
def embed():
    from fazhi.models.embed import Embedder

    if not (settings().embedder / "config.json").is_file():
        pytest.fail(f"{settings().embedder} is missing: `make setup` imports the base encoder")
    return Embedder(settings().embedder).encode


def side(path) -> Side:
    a = Analyzer("rules").analyze(path)
    return Side.of(a.document.meta, a.digest)


def test_shortcoming_matching_precision_and_recall_on_the_pair_set(embed):
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()]
    a, b = embed([r["a"] for r in rows]), embed([r["b"] for r in rows])
    predicted = (a * b).sum(axis=1) >= SAME_PROBLEM
    same = np.array([r["same"] for r in rows])
    tp = int((predicted & same).sum())
    precision, recall = tp / predicted.sum(), tp / same.sum()
    assert len(rows) == 60 and same.sum() == 30
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_a_report_compared_with_itself_changes_nothing(embed):
    s = side(SAMPLE)
    c = compare(s, s, embed)
    assert c.shortcomings and all(x.status == "recurring" for x in c.shortcomings)
    assert c.counts == {"recurring": len(s.digest.shortcomings), "new": 0, "no_longer_mentioned": 0}
    assert all(r.change == 0 for r in c.coverage) and not c.areas_dropped and not c.areas_added
    assert len(c.figures) == len([f for f in s.digest.figures if f.what]) and all(f.change == 0 for f in c.figures)
    assert c.same_government


def test_removing_the_shortcomings_section_makes_them_no_longer_mentioned(embed, tmp_path):
    text = SAMPLE.read_text(encoding="utf-8")
    start, end = text.index("二、存在的不足"), text.index("三、2024年工作打算")
    fixed = tmp_path / "fixed.txt"
    fixed.write_text(text[:start] + text[end:], encoding="utf-8")
    old, new = side(SAMPLE), side(fixed)
    c = compare(old, new, embed)
    section = [s.text for s in old.digest.shortcomings if s.text in text[start:end]]
    assert len(section) == 3
    gone = [x.text for x in c.shortcomings if x.status == "no_longer_mentioned"]
    assert sorted(gone) == sorted(section)
    assert not [x for x in c.shortcomings if x.status == "new"]


def test_the_second_year_of_the_sample(embed):
    c = compare(side(SAMPLE), side(SAMPLE_2024), embed)
    by_what = {f.what: f for f in c.figures}
    assert (by_what["综合纠错率"].old, by_what["综合纠错率"].new) == (21.8, 15.2)
    recurring = [x for x in c.shortcomings if x.status == "recurring" and "行政复议" in x.text]
    assert recurring and "行政复议" in recurring[0].matched_text
    gone = " ".join(x.text for x in c.shortcomings if x.status == "no_longer_mentioned")
    assert "持证比例偏低" in gone and "公众参与" in gone
    assert "2023→2024" in c.summary


def test_reports_of_two_governments_are_flagged(embed, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(SAMPLE.read_text(encoding="utf-8").replace("青溪县", "白河市"), encoding="utf-8")
    c = compare(side(SAMPLE), side(other), embed)
    assert not c.same_government and c.summary.startswith("注意：两份报告分属不同主体")


def test_the_api_returns_the_cli_json(tmp_path):
    from fazhi.serving.app import create_app
    from fazhi.settings import Settings

    cli = subprocess.run([sys.executable, "-m", "fazhi.cli", "compare", str(SAMPLE), str(SAMPLE_2024), "--model",
                          "rules", "--format", "json"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    with TestClient(create_app(Settings(db=tmp_path / "c.db", model="rules", api_keys="k"))) as client:
        ids = [client.post("/v1/reports", files={"file": (p.name, p.read_bytes())}, headers={"X-API-Key": "k"}).json()["id"]
               for p in (SAMPLE, SAMPLE_2024)]
        r = client.get("/v1/compare", params={"old": ids[0], "new": ids[1]})
        assert r.status_code == 200, r.text
        assert r.json() == json.loads(cli.stdout)
        missing = client.get("/v1/compare", params={"old": ids[0], "new": "0" * 32})
        assert missing.status_code == 404


def test_compare_renders_markdown_with_its_chart(tmp_path):
    out = tmp_path / "c.md"
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "compare", str(SAMPLE), str(SAMPLE_2024), "--model",
                             "rules", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "![coverage](c.compare.png)" in out.read_text(encoding="utf-8")
    assert (tmp_path / "c.compare.png").read_bytes().startswith(b"\x89PNG")
