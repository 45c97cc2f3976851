"""Distant supervision from unlabeled corpora (JSONL records ``{"id","title","text"}``).

- Statutes and regulations: each article inherits the category of the statute's
  subject (行政复议法 → dispute_resolution, 行政处罚法 → enforcement, …); articles
  state no shortcoming.
- Government work reports: the paragraph of admitted problems ("我们也清醒看到…")
  is a shortcoming (category ``other``: it spans many areas); paragraphs on
  法治政府/依法行政 get the category their cues decide.
"""

from __future__ import annotations

import re
from typing import Iterator

from fazhi.corpora.taxonomy import Taxonomy

# Statute subject → category. The 纲要 and the 督察规定 are the texts reports answer
# to, not examples of any one area, so they are left out.
STATUTE_TOPICS: list[tuple[re.Pattern[str], str]] = [(re.compile(p), c) for p, c in (
    (r"法治政府建设实施纲要|督察工作规定|法治中国建设规划|法治社会建设实施纲要", ""),
    (r"重大行政决策|法律顾问", "decision_making"),
    (r"行政复议|人民调解|调解法|信访|法律援助|公证法|仲裁法|行政诉讼法|行政裁决", "dispute_resolution"),
    (r"行政处罚|行政强制|行政执法|综合执法|裁量权基准", "enforcement"),
    (r"政府信息公开|审计法|审计条例|监督法|监察法|政务公开", "supervision"),
    (r"立法法|规章制定程序|法规规章备案|规范性文件|立法条例", "rule_making"),
    (r"行政许可|营商环境|政务服务|社会信用|优化.*服务", "functions"),
    (r"普法|法治宣传教育", "leadership"),
)]
_ARTICLE = re.compile(r"第[一二三四五六七八九十百零〇]+条\s*")
_PROBLEMS = re.compile(r"清醒(?:地)?(?:看到|认识到)|(?:困难|问题)和(?:挑战|不足)")
_RULE_OF_LAW = re.compile(r"法治政府|依法行政|政府自身建设")


def statute_category(title: str) -> str | None:
    """The category a statute's articles inherit, or None when its subject is not mapped."""
    for pattern, category in STATUTE_TOPICS:
        if pattern.search(title):
            return category or None
    return None


def statute_examples(record: dict, corpus: str, max_articles: int = 8) -> Iterator[dict]:
    """Articles of one statute as labelled examples (evenly spread over the statute)."""
    category = statute_category(record.get("title", ""))
    if not category:
        return
    body = record["text"].split("<!-- INFO END -->")[-1]
    parts = [re.sub(r"\s+", "", p) for p in _ARTICLE.split(body)[1:]]
    articles = [p.split("#")[0] for p in parts if 20 <= len(p.split("#")[0]) <= 400]
    step = max(1, len(articles) // max_articles)
    for art in articles[::step][:max_articles]:
        yield {"text": art, "category": category, "shortcoming": False, "confidence": 0.6,
               "heading_path": [record["title"]], "label_source": f"distant:{corpus}:statute_subject"}


def gwr_examples(record: dict, corpus: str, tax: Taxonomy) -> Iterator[dict]:
    """Problem paragraphs and rule-of-law paragraphs of a government work report."""
    for para in (p.strip() for p in record["text"].split("\n")):
        if len(para) < 60:
            continue
        if _PROBLEMS.search(para):
            yield {"text": para, "category": tax.default, "shortcoming": True, "confidence": 0.7,
                   "heading_path": [], "label_source": f"distant:{corpus}:gwr_problems"}
        elif _RULE_OF_LAW.search(para):
            scores = tax.scores(para)
            ranked = sorted(scores.items(), key=lambda kv: -kv[1])
            if ranked and ranked[0][1] >= 3 and (len(ranked) == 1 or ranked[0][1] >= 2 * ranked[1][1]):
                yield {"text": para, "category": ranked[0][0], "shortcoming": False, "confidence": 0.5,
                       "heading_path": [], "label_source": f"distant:{corpus}:gwr_rule_of_law"}


def corpus_examples(record: dict, corpus: str, tax: Taxonomy) -> Iterator[dict]:
    """Route a record to the rule that fits it (work report or statute)."""
    if "政府工作报告" in record.get("title", "") or corpus.startswith(("provincial_gwr", "gov_work")):
        yield from gwr_examples(record, corpus, tax)
    else:
        yield from statute_examples(record, corpus)
