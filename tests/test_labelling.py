"""Labelling functions, the combiner, the label scheme file, corpus build/stats."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import REPORTS, ROOT, SAMPLE
from fazhi.corpora.dataset import build, collect, split_by_document, stats
from fazhi.corpora.distant import corpus_examples, statute_category
from fazhi.corpora.synthesis import write_reports
from fazhi.corpora.labelling import (Context, Vote, combine, context_for, label, lf_heading, lf_preamble,
                               lf_shortcoming_section, lf_shortcoming_text, lf_text, lf_title)
from fazhi.corpora.taxonomy import load_taxonomy
from fazhi.errors import FazhiError

TAX = load_taxonomy()


def test_scheme_file_has_every_category_with_names():
    assert TAX.labels == ["decision_making", "enforcement", "supervision", "dispute_resolution", "functions",
                          "rule_making", "leadership", "other"]
    assert TAX.names()["enforcement"] == "严格规范公正文明执法"
    assert TAX.default == "other"


@pytest.mark.parametrize("body, problem", [
    ("categories: [{id: a}, {id: a}]\n", "appears twice"),
    ("categories: [{id: a, cues: ['(']}]\n", "bad pattern"),
    ("categories: [{id: a}]\ndefault_category: z\n", "default_category"),
    ("version: 1\n", "non-empty 'categories'"),
])
def test_bad_scheme_files(tmp_path, body, problem):
    path = tmp_path / "scheme.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(FazhiError, match=problem):
        load_taxonomy(path)


def test_lf_title_reads_the_paragraph_title():
    ctx = context_for("2.进一步加强规范性文件管理。完善合法性审核机制,严格落实备案。")
    assert lf_title(ctx, TAX).label == "rule_making"
    assert lf_title(context_for("没有标题的一段话,讲了很多内容。"), TAX) is None


def test_lf_heading_nearest_informative_heading_wins():
    ctx = Context(text="全年开展工作。", heading_path=("一、2019年工作情况", "(六)化解矛盾纠纷,促进社会和谐稳定", "2.精心安排部署"))
    vote = lf_heading(ctx, TAX)
    assert vote.label == "dispute_resolution" and vote.source == "heading"
    # a nearer heading with its own cue overrides the farther one
    ctx = Context(text="x", heading_path=("(六)化解矛盾纠纷", "1.强化行政执法人员培训"))
    assert lf_heading(ctx, TAX).label == "enforcement"
    assert lf_heading(Context(text="x", heading_path=("一、2019年工作情况",)), TAX) is None


def test_lf_text_needs_a_dominant_category():
    assert lf_text(Context(text="受理行政复议案件12件,调解纠纷30件。"), TAX).label == "dispute_resolution"
    assert lf_text(Context(text="执法人员培训,行政复议案件。"), TAX) is None  # 1 vs 1
    assert lf_text(Context(text="审计项目38个。"), TAX) is None  # one cue is not enough


def test_lf_preamble_only_before_the_first_heading():
    assert lf_preamble(Context(text="现将有关情况报告如下:", preamble=True), TAX).label == "other"
    assert lf_preamble(Context(text="现将有关情况报告如下:"), TAX) is None


def test_shortcoming_functions():
    section = Context(text="部分部门力量薄弱。", heading_path=("二、推进法治政府建设存在的不足",))
    assert lf_shortcoming_section(section, TAX).label is True
    assert lf_shortcoming_section(Context(text="二、存在的问题", kind="heading"), TAX).label is True
    assert lf_shortcoming_text(Context(text="仍存在一些薄弱环节,有待进一步加强。"), TAX).label is True
    assert lf_shortcoming_text(Context(text="查找问题50个,并及时反馈整改。"), TAX).label is True
    # counts of problems found by audit or inspection, or rectified: the problems existed
    for text in ("完成审计项目10个，查出问题资金8120万元。", "开展突出问题专项整治，整改3148个问题。",
                 "审计发现问题整改率达98.7%。", "督促整改资金使用问题6337万元。"):
        assert lf_shortcoming_text(Context(text=text), TAX).label is True, text
    # pledges and problems solved for others are not shortcomings
    for text in ("坚持问题导向,补齐法治政府建设短板。", "有效解决了群众办事来回跑问题。", "确保整改有落实、推进有实效。",
                 "帮助企业解决生产经营中遇到的困难和问题18个。", "及时协调解决改革推进中遇到的困难和问题。"):
        assert lf_shortcoming_text(Context(text=text), TAX) is None, text


def test_combiner_precedence_and_confidence():
    title, heading, text = Vote("rule_making", 0.9, "title"), Vote("decision_making", 0.85, "heading"), \
        Vote("rule_making", 0.6, "text")
    agree = combine([title, text], [], TAX)
    clash = combine([title, heading], [], TAX)
    assert agree.category == clash.category == "rule_making" and agree.category_source == "title"
    assert agree.category_confidence > 0.9 > clash.category_confidence
    assert combine([], [], TAX).category == "other" and combine([], [], TAX).category_confidence == 0.3
    sc = combine([], [Vote(True, 0.8, "shortcoming_text"), Vote(True, 0.9, "shortcoming_section")], TAX)
    assert sc.shortcoming and sc.shortcoming_source == "shortcoming_section" and sc.shortcoming_confidence > 0.9
    assert combine([], [], TAX).shortcoming is False


def test_label_end_to_end_on_a_numbered_paragraph():
    lab = label(context_for("3.扎实开展行政执法案卷评查。查找问题50个,并及时反馈相关单位整改落实。"), TAX)
    assert (lab.category, lab.shortcoming) == ("enforcement", True)


def test_distant_rules():
    assert statute_category("中华人民共和国行政复议法(2023-09-01)") == "dispute_resolution"
    assert statute_category("重大行政决策程序暂行条例") == "decision_making"
    assert statute_category("法治政府建设实施纲要（2021－2025年）") is None
    law = {"id": "x", "title": "中华人民共和国行政处罚法", "text": "# 行政处罚法\n<!-- INFO END -->\n第一条 为了规范行政处罚的设定和实施,保障和监督行政机关有效实施行政管理。\n第二条 行政处罚是指行政机关依法对违反行政管理秩序的公民给予惩戒的行为。"}
    rows = list(corpus_examples(law, "laws", TAX))
    assert len(rows) == 2 and {r["category"] for r in rows} == {"enforcement"}
    assert rows[0]["label_source"] == "distant:laws:statute_subject"
    gwr = {"id": "g", "title": "2025年某省政府工作报告", "text": "我们也清醒看到,经济回升基础还不稳固,一些领域风险隐患较多,政府自身建设还有不足,形式主义官僚主义问题仍然存在,我们一定直面问题,全力解决。"}
    (row,) = corpus_examples(gwr, "provincial_gwr_2025", TAX)
    assert row["shortcoming"] is True and row["label_source"].endswith("gwr_problems")


def test_split_by_document_never_shares_a_document():
    rows = [{"doc_id": f"d{i // 5}", "text": str(i)} for i in range(500)]
    train, val = split_by_document(rows, validation=0.2)
    assert train and val
    assert not {r["doc_id"] for r in train} & {r["doc_id"] for r in val}
    assert split_by_document(rows, validation=0.2) == (train, val)


def test_build_and_stats_on_shared_reports(tmp_path):
    out = tmp_path / "corpus"
    dd = build([*REPORTS, SAMPLE], out, TAX, validation=0.3, progress=False)
    for col in ("text", "category", "shortcoming", "confidence", "doc_id", "heading_path", "label_source"):
        assert col in dd["train"].column_names
    s = stats(dd)
    total = sum(v["paragraphs"] for v in s.values())
    assert total == len(collect([*REPORTS, SAMPLE], TAX, progress=False))
    docs = [set(dd[k]["doc_id"]) for k in dd]
    assert not docs[0] & docs[1]
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "corpus", "stats", str(out), "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["train"]["paragraphs"] == len(dd["train"])


def test_build_cli_bad_source(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "corpus", "build", str(tmp_path / "none"),
                             "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2 and "no such file or directory" in result.stderr


def test_evaluate_rules_contract(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "evaluate", "--gold", str(REPORTS[0].parents[2] / "gold" / "dev"),
                             "--model", "rules", "--report", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for block in ("paragraph", "document"):
        assert {"category_macro_f1", "category_accuracy", "shortcoming_f1", "n"} <= set(out[block])
        assert out[block]["n"] == 62
        for head in ("category", "shortcoming"):
            floor = out[block]["ece_if_calibrated"][head]
            assert 0 <= floor["interval"][0] <= floor["mean"] <= floor["interval"][1] <= 1
    assert (tmp_path / "confusion_document.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "| enforcement |" in report and report.count("A perfectly calibrated model") == 2


def test_corpus_synth_reproduces_the_committed_reports(tmp_path):
    out = tmp_path / "synth"
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "corpus", "synth", "--out", str(out), "--count", "3"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    committed = ROOT / "corpora" / "synthetic" / "reports"
    for path in sorted(out.glob("*.txt")):
        # the committed training reports are exactly what the bank generates
        assert path.read_text(encoding="utf-8") == (committed / path.name).read_text(encoding="utf-8")
    assert len(list(committed.glob("synthetic_*.txt"))) == 120
    bad = subprocess.run([sys.executable, "-m", "fazhi.cli", "corpus", "synth", "--out", str(out),
                          "--bank", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such sentence bank" in bad.stderr


def test_findings_reports_are_labelled_shortcomings(tmp_path):
    import yaml

    out = tmp_path / "findings"
    cmd = [sys.executable, "-m", "fazhi.cli", "corpus", "synth", "--out", str(out), "--count", "30", "--seed", "1",
           "--findings", "0.4", "--prefix", "findings"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir())[::29] == ["findings_000.txt", "findings_029.txt"]
    # each findings sentence sits inside an item of its area: a shortcoming under the area's category
    bank = yaml.safe_load((ROOT / "fazhi" / "data" / "bank.yaml").read_text(encoding="utf-8"))

    def pattern(template: str) -> str:  # each {slot} matches any filling
        return re.sub(r"\\\{[a-z0-9]+\\\}", ".+?", re.escape(template))

    cues = {key: re.compile("|".join(map(pattern, cat["findings"]))) for key, cat in bank["categories"].items()}
    rows = collect([out], TAX, progress=False)
    found = [(key, r) for r in rows for key, cue in cues.items() if cue.search(r["text"])]
    assert len(found) >= 80
    assert all(r["shortcoming"] for _, r in found)
    assert sum(r["category"] == key for key, r in found) >= 0.9 * len(found)
    bad = subprocess.run([*cmd[:-4], "--findings", "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--findings" in bad.stderr


def test_synthetic_problem_sections_are_labelled_shortcomings(tmp_path):
    rows = collect(write_reports(tmp_path, 30, seed=3), TAX, progress=False)
    problems = [r for r in rows if r["kind"] == "body" and ("方面。" in r["text"][:16] or "方面的问题。" in r["text"])]
    assert len(problems) >= 10
    assert all(r["shortcoming"] for r in problems)
    # titled by their area ("（一）行政执法方面。…"), they take that area's category, not "other"
    assert sum(r["category"] != "other" for r in problems) >= 0.9 * len(problems)
    overviews = [r for r in rows if r["text"].startswith(("一年来", "过去一年"))]
    assert all(r["category"] == "other" and not r["shortcoming"] for r in overviews)


def test_synthetic_reports_exercise_every_cue_of_the_scheme():
    # a model trained on the silver corpus meets each cue of the scheme under the label the cue stands for
    rows = collect([ROOT / "corpora" / "synthetic" / "reports"], TAX, progress=False)
    missing = [f"{c.id}:{p.pattern}" for c in TAX.categories for p in c.cues
               if not any(r["category"] == c.id and p.search(r["text"]) for r in rows)]
    missing += [f"shortcoming {kind}:{p.pattern}" for kind, cues in (("body", TAX.shortcoming_text),
                                                                     ("heading", TAX.shortcoming_headings))
                for p in cues if not any(r["shortcoming"] and r["kind"] == kind and p.search(r["text"]) for r in rows)]
    assert missing == []
