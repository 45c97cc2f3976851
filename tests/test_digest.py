"""Digests: sentence splitting, admitted shortcomings, claimed figures, coverage, renderings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPORTS, SAMPLE
from fazhi.corpora import read_document
from fazhi.corpora.sentences import split_sentences
from fazhi.cli import app
from fazhi.errors import FazhiError
from fazhi.models.base import document_inputs
from fazhi.models.registry import load_classifier
from fazhi.models.digest import build_digest, find_figures

REPORT_001 = next(p for p in REPORTS if p.name.startswith("001_"))


def digest_of(path, model="rules", **kw):
    clf = load_classifier(model)
    doc = read_document(path)
    return build_digest(doc, clf.predict(*document_inputs(doc)), clf, **kw)


def test_sentences_respect_quotes_brackets_and_numbers():
    text = "综合纠错率76.15%。他说：“依法办事。不得违法！”随后开会；《关于〈规定〉的通知。》已印发？是"
    assert split_sentences(text) == ["综合纠错率76.15%。", "他说：“依法办事。不得违法！”随后开会；",
                                     "《关于〈规定〉的通知。》已印发？", "是"]
    assert split_sentences("  ") == []
    # an unclosed quote does not swallow the rest of a long text
    assert len(split_sentences("“未闭合。" + "长" * 300 + "。下一句。")) == 2


def test_shortcomings_of_001_are_separate_items():
    digest = digest_of(REPORT_001)
    texts = [s.text for s in digest.shortcomings]
    for start in ("一是部分部门法治工作力量比较薄弱", "二是规范性文件报送备案审查的主动性不高", "三是对综合行政执法改革工作"):
        assert sum(t.startswith(start) for t in texts) == 1, start
    item = next(s for s in digest.shortcomings if s.text.startswith("三是"))
    assert item.category == "enforcement"
    assert item.paragraph_id == next(s.paragraph_id for s in digest.shortcomings if s.text.startswith("一是"))


def test_figures_of_001():
    figures = digest_of(REPORT_001).figures
    found = {(f.value, f.unit, f.what) for f in figures}
    assert (76.15, "%", "综合纠错率") in found
    assert (83, "件", "成功调解行政复议案件") in found
    assert (1.5, "万平方米", "完成…的政务服务中心搬迁") in found
    assert any(f.value == 109 and f.unit == "起" and "审结" in f.what for f in figures)
    # years and dates are not figures
    assert not any(f.unit in ("年", "月", "日") or f.value == 2019 for f in figures)
    assert all(f.category == "dispute_resolution" for f in figures if f.what == "综合纠错率")


def test_find_figures_units_and_phrases():
    assert find_figures("培训311名执法人员，出庭应诉率100%，挽回损失2.5亿元") == [
        (311, "名", "培训…执法人员"), (100, "%", "出庭应诉率"), (2.5, "亿元", "挽回损失")]
    assert find_figures("2023年3月，12345热线") == []


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.name[:3])
def test_coverage_sums_to_one_and_missing_are_zero(report):
    digest = digest_of(report)
    assert sum(digest.coverage.values()) == pytest.approx(1.0, abs=1e-3)
    assert all(digest.coverage[c] == 0 for c in digest.missing_categories)
    assert "other" not in digest.missing_categories
    assert 0 < len(digest.summary) <= 300
    assert all(len(v) <= 2 for v in digest.highlights.values())


def test_summary_length_and_reading_order():
    digest = digest_of(REPORT_001, summary_chars=120)
    assert 0 < len(digest.summary) <= 120
    text = read_document(REPORT_001).text
    sentences = split_sentences(digest.summary)
    positions = [text.find(s.rstrip("。")) for s in sentences]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)


def test_missing_area_is_reported():
    doc = read_document(SAMPLE)
    clf = load_classifier("rules")
    keep = [p.category != "dispute_resolution" for p in clf.predict(*document_inputs(doc))]
    doc.paragraphs = [p for p, k in zip(doc.paragraphs, keep) if k]
    digest = build_digest(doc, clf.predict(*document_inputs(doc)), clf)
    assert "dispute_resolution" in digest.missing_categories


def test_summarize_formats(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["summarize", str(SAMPLE), "--model", "rules", "--format", "json"])
    assert result.exit_code == 0, result.output
    digest = json.loads(result.stdout)
    assert set(digest) == {"summary", "coverage", "missing_categories", "shortcomings", "figures", "highlights"}
    assert set(digest["figures"][0]) == {"value", "unit", "what", "category", "paragraph_id"}

    out = tmp_path / "d" / "digest.md"
    result = runner.invoke(app, ["summarize", str(SAMPLE), "--model", "rules", "--out", str(out)])
    assert result.exit_code == 0, result.output
    chart = out.with_name("digest.coverage.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = out.read_text(encoding="utf-8")
    assert "![coverage](digest.coverage.png)" in md and "## Admitted shortcomings" in md

    result = runner.invoke(app, ["summarize", str(SAMPLE), "--model", "rules", "--format", "html"])
    assert result.exit_code == 0
    assert result.stdout.startswith("<!doctype html>") and "data:image/png;base64," in result.stdout


def test_empty_or_furniture_only_report_is_a_clear_error(tmp_path):
    furniture = tmp_path / "furniture.txt"
    furniture.write_text("第 1 页 共 2 页\n- 2 -\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    for path in (furniture, empty):
        result = CliRunner().invoke(app, ["summarize", str(path), "--model", "rules", "--format", "json"])
        assert result.exit_code == 2
        assert str(path) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(FazhiError, match="summary_chars"):
        digest_of(SAMPLE, summary_chars=0)


def test_centrality_is_textrank_on_the_full_graph_without_forming_it():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    from fazhi.corpora.sentences import split_sentences
    from fazhi.models.digest import _centrality

    sentences = [s for line in SAMPLE.read_text(encoding="utf-8").splitlines() for s in split_sentences(line)]
    vectors = normalize(TfidfVectorizer(analyzer="char", ngram_range=(1, 2)).fit_transform(sentences)).tocsr()
    # TextRank as usually written: the dense similarity graph, row-normalised, power iteration
    sim = (vectors @ vectors.T).toarray()
    np.fill_diagonal(sim, 0.0)
    out = sim.sum(axis=1, keepdims=True)
    out[out == 0] = 1.0
    rank = np.full(len(sim), 1.0 / len(sim))
    for _ in range(50):
        rank = 0.15 / len(sim) + 0.85 * (sim / out).T @ rank
    assert len(sentences) > 50 and np.allclose(_centrality(vectors), rank, atol=1e-12)


def test_the_digest_is_the_same_in_every_process(tmp_path):
    """Categories that fill a report equally used to come out in a set's order, which Python's
    string hashing changes from one process to the next, and the summary's sentence order with it."""
    import os
    import subprocess
    import sys

    from conftest import REPORTS

    outs = {subprocess.run([sys.executable, "-m", "fazhi.cli", "summarize", str(REPORTS[0]), "--model", "rules",
                            "--format", "json"], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(4)}
    assert len(outs) == 1
