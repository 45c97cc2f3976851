"""Year over year: what changed between two digests of one government's reports.

- **shortcomings**: each of the new report's admitted shortcomings is ``recurring`` when one of
  the old report's says the same (cosine similarity of sentence embeddings at least
  ``SAME_PROBLEM``), else ``new``; each old one that no new one matches is
  ``no_longer_mentioned``.
- **coverage**: each category's share of body paragraphs in both years, and the areas
  addressed in one year only.
- **figures**: claimed figures matched by unit and what they measure (the words before them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from typing import Callable, Sequence

import numpy as np

from fazhi.models.digest import Digest, Figure

# cosine similarity of E5 sentence embeddings above which two shortcomings name the same problem:
# chosen on the 60 labelled pairs of tests/data/shortcoming_pairs.jsonl (precision 0.93, recall 0.93
# there, against 0.88 / 0.97 for character TF-IDF at its best threshold)
SAME_PROBLEM = 0.938
# two figures measure the same thing when their units agree and their descriptions are this alike
SAME_MEASURE = 0.75

Embed = Callable[[Sequence[str]], np.ndarray]  # texts → (n, d) unit vectors


@dataclass
class Side:
    """One report of a comparison: who and when (from its meta or the store), and its digest."""

    title: str | None
    region: str | None
    year: int | None
    digest: Digest

    @classmethod
    def of(cls, about: dict, digest: Digest) -> "Side":
        """From a dict with ``title``, ``region`` and ``year`` (a document's meta, a stored report)."""
        return cls(about.get("title"), about.get("region"), about.get("year"), digest)


@dataclass
class ShortcomingChange:
    status: str  # recurring, new or no_longer_mentioned
    text: str
    category: str
    paragraph_id: str
    matched_text: str | None = None  # the other year's shortcoming it matched (recurring only)
    matched_paragraph_id: str | None = None
    similarity: float | None = None  # to the closest shortcoming of the other year


@dataclass
class CoverageChange:
    category: str
    old: float
    new: float
    change: float


@dataclass
class FigureChange:
    what: str
    unit: str
    old: float
    new: float
    change: float
    category: str


@dataclass
class Comparison:
    old: dict
    new: dict
    same_government: bool
    shortcomings: list[ShortcomingChange]
    coverage: list[CoverageChange]
    areas_dropped: list[str]  # addressed in the old report, not in the new one
    areas_added: list[str]
    figures: list[FigureChange]
    counts: dict[str, int] = field(default_factory=dict)
    summary: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _who(side: Side) -> dict:
    return {"title": side.title, "region": side.region, "year": side.year}


def match_shortcomings(old: Digest, new: Digest, embed: Embed) -> list[ShortcomingChange]:
    """The new report's shortcomings (recurring or new), then the old ones no longer mentioned."""
    olds, news = old.shortcomings, new.shortcomings
    if not olds or not news:
        sim = np.zeros((len(news), len(olds)))
    else:
        vectors = embed([s.text for s in news] + [s.text for s in olds])
        sim = vectors[:len(news)] @ vectors[len(news):].T  # (new, old)
    out, matched = [], set()
    for i, s in enumerate(news):
        j = int(sim[i].argmax()) if olds else None
        best = round(float(sim[i, j]), 4) if j is not None else None
        if j is not None and sim[i, j] >= SAME_PROBLEM:
            matched.add(j)
            out.append(ShortcomingChange("recurring", s.text, s.category, s.paragraph_id, olds[j].text,
                                         olds[j].paragraph_id, best))
        else:
            out.append(ShortcomingChange("new", s.text, s.category, s.paragraph_id, similarity=best))
    for j, s in enumerate(olds):
        if j not in matched:
            best = round(float(sim[:, j].max()), 4) if news else None
            out.append(ShortcomingChange("no_longer_mentioned", s.text, s.category, s.paragraph_id, similarity=best))
    return out


def match_figures(old: Sequence[Figure], new: Sequence[Figure]) -> list[FigureChange]:
    """Pairs of figures with the same unit and alike descriptions, best pairs first, each figure used
    once; in the new report's order."""
    candidates = []
    for i, n in enumerate(new):
        for j, o in enumerate(old):
            if n.unit == o.unit and n.what and o.what:
                ratio = 1.0 if n.what == o.what else SequenceMatcher(None, n.what, o.what).ratio()
                if ratio >= SAME_MEASURE:
                    candidates.append((-ratio, abs(i - j), i, j))  # ties: the figure at the same position
    pairs, used_new, used_old = {}, set(), set()
    for _, _, i, j in sorted(candidates):
        if i not in used_new and j not in used_old:
            pairs[i] = j
            used_new.add(i)
            used_old.add(j)
    return [FigureChange(new[i].what, new[i].unit, old[j].value, new[i].value,
                         round(float(new[i].value) - float(old[j].value), 4), new[i].category)
            for i, j in sorted(pairs.items())]


def compare(old: Side, new: Side, embed: Embed, names: dict[str, str] | None = None) -> Comparison:
    """What changed from ``old`` to ``new``; ``names`` (category id → name) word the summary."""
    names = names or {}
    shortcomings = match_shortcomings(old.digest, new.digest, embed)
    cats = list(new.digest.coverage) + [c for c in old.digest.coverage if c not in new.digest.coverage]
    coverage = [CoverageChange(c, old.digest.coverage.get(c, 0.0), new.digest.coverage.get(c, 0.0),
                               round(new.digest.coverage.get(c, 0.0) - old.digest.coverage.get(c, 0.0), 4))
                for c in cats]
    dropped = [c.category for c in coverage if c.old > 0 and c.new == 0]
    added = [c.category for c in coverage if c.old == 0 and c.new > 0]
    figures = match_figures(old.digest.figures, new.digest.figures)
    counts = {status: sum(s.status == status for s in shortcomings)
              for status in ("recurring", "new", "no_longer_mentioned")}
    same = bool(old.region and old.region == new.region)
    result = Comparison(_who(old), _who(new), same, shortcomings, coverage, dropped, added, figures, counts)
    result.summary = _summary(result, names)
    return result


def _summary(c: Comparison, names: dict[str, str]) -> str:
    """A few sentences in Chinese, as a supervisor would write them."""
    name = lambda cat: names.get(cat, cat)  # noqa: E731
    years = f"{c.old.get('year') or '上一份报告'}→{c.new.get('year') or '本报告'}"
    parts = [] if c.same_government else [f"注意：两份报告分属不同主体（{c.old.get('region') or '未知'}、"
                                          f"{c.new.get('region') or '未知'}）。"]
    k = c.counts
    parts.append(f"{years}：本年承认的问题中{k['recurring']}项与上年相同、{k['new']}项为新出现，"
                 f"上年的问题有{k['no_longer_mentioned']}项本年不再提及。")
    if c.areas_dropped:
        parts.append(f"本年未再涉及：{'、'.join(name(a) for a in c.areas_dropped)}。")
    if c.areas_added:
        parts.append(f"本年新涉及：{'、'.join(name(a) for a in c.areas_added)}。")
    moved = [f for f in c.figures if f.change]
    if c.figures:
        shown = "；".join(f"{f.what}{f.old:g}{f.unit}→{f.new:g}{f.unit}" for f in moved[:3])
        parts.append(f"可对比的数据{len(c.figures)}项，其中{len(moved)}项有变化" + (f"（{shown}）" if shown else "") + "。")
    return "".join(parts)
