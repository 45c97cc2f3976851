"""A report's digest: coverage, admitted shortcomings, claimed figures, highlights and a summary.

Everything here is extractive: the digest quotes the report's own sentences. It reads a
parsed :class:`~corpora.document.Document` and the classifier's predictions for its
paragraphs, so any model (rules, tfidf, bert) can feed it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from fazhi.corpora.document import Document, Paragraph
from fazhi.corpora.sentences import split_sentences
from fazhi.corpora.taxonomy import Taxonomy, load_taxonomy
from fazhi.errors import FazhiError
from fazhi.models.base import Classifier, Prediction

SUMMARY_CHARS = 300
HIGHLIGHTS_PER_CATEGORY = 2
MIN_SENTENCE_CHARS = 8
# two sentences this similar (cosine of character n-gram TF-IDF) say the same thing
REDUNDANT = 0.5
_ORDER = 10_000

_UNITS = ("个百分点", "平方公里", "平方米", "万人次", "人次", "件次", "%", "％", "‰", "元", "件", "起", "名", "人", "个",
          "次", "项", "家", "场", "篇", "条", "份", "宗", "户", "所", "批", "期", "天", "小时", "亩", "台", "套", "部",
          "支", "座", "处", "类", "本", "公里", "万", "亿")
_FIGURE = re.compile(
    r"(?<![\d.．A-Za-z])(\d+(?:[.．]\d+)?)\s*(余|多)?\s*(万|亿|千)?(" + "|".join(map(re.escape, _UNITS)) + ")")
_CLAUSE = re.compile(r"[，,；;。：:、！？!?（）()]")
_FILLER_END = re.compile(r"(?:的|达到了?|达|为|是|共计|共|累计|约|超过|近|总计|合计|分别)+$")


@dataclass
class Shortcoming:
    text: str
    category: str
    paragraph_id: str


@dataclass
class Figure:
    """A quantitative claim: ``value`` as written (``unit`` keeps 万/亿 multipliers), ``what`` it measures."""

    value: float
    unit: str
    what: str
    category: str
    paragraph_id: str


@dataclass
class Digest:
    summary: str
    coverage: dict[str, float]
    missing_categories: list[str]
    shortcomings: list[Shortcoming] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    highlights: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Digest":
        """The inverse of :meth:`to_dict` (a stored digest back as objects)."""
        return cls(d["summary"], d["coverage"], d["missing_categories"], [Shortcoming(**x) for x in d["shortcomings"]],
                   [Figure(**x) for x in d["figures"]], d["highlights"])


@dataclass
class _Sentence:
    text: str
    category: str
    order: int  # _ORDER × paragraph index + sentence index: position in the report, for putting a summary back in reading order


def coverage(categories: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Share of body paragraphs per label (every label present, shares sum to 1)."""
    n = len(categories)
    return {label: round(sum(c == label for c in categories) / n, 4) for label in labels}


def find_figures(text: str) -> list[tuple[float, str, str]]:
    """``(value, unit, what)`` for each number with a unit in ``text`` ("审结109起" → (109, "起", "审结")).

    ``what`` is the clause around the figure: the words before it, and the words after it
    when they name what is counted ("培训311名执法人员" → "培训…执法人员").
    """
    out = []
    for m in _FIGURE.finditer(text):
        left = _CLAUSE.split(text[:m.start()])[-1]
        right = _CLAUSE.split(text[m.end():])[0]
        before = _FILLER_END.sub("", left.strip())[-24:]
        after = right.strip()[:12]
        what = f"{before}…{after}" if before and after else before or after
        raw = m.group(1).replace("．", ".")
        value = float(raw) if "." in raw else int(raw)
        out.append((value, (m.group(3) or "") + m.group(4), what))
    return out


def _centrality(vectors: sparse.csr_matrix, iterations: int = 50, damping: float = 0.85) -> np.ndarray:
    """TextRank over the cosine-similarity graph of ``vectors`` (n × d sparse, rows L2-normalised,
    non-negative) → n scores.

    The graph ``S = V Vᵀ`` (diagonal removed) is never formed: each step needs only ``Sᵀ w =
    V (Vᵀ w) − diag(V Vᵀ) w``, so time and memory grow with the number of sentences, not its
    square (a dense S of 30,000 sentences would take 7 GB).
    """
    n = vectors.shape[0]
    self_sim = np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()
    out_weight = vectors @ np.asarray(vectors.sum(axis=0)).ravel() - self_sim
    out_weight[out_weight <= 1e-12] = 1.0  # a sentence like no other: its row of S is zero
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        w = rank / out_weight
        rank = (1 - damping) / n + damping * (vectors @ (vectors.T @ w) - self_sim * w)
    return rank


def _pick(indices: list[int], scores: np.ndarray, vectors: sparse.csr_matrix, k: int) -> list[int]:
    """The ``k`` best-scoring of ``indices``, skipping any too similar to one already picked."""
    chosen: list[int] = []
    for i in sorted(indices, key=lambda i: -scores[i]):
        if all(float(vectors[i].multiply(vectors[j]).sum()) < REDUNDANT for j in chosen):
            chosen.append(i)
        if len(chosen) == k:
            break
    return chosen


def _shortcoming_items(p: Paragraph, under_heading: bool, clf: Classifier) -> list[str]:
    """The separate shortcomings a flagged paragraph states.

    Its enumerated items ("一是…二是…") when it sits in a shortcomings section or when the
    classifier flags the items themselves; otherwise its flagged sentences; the whole
    paragraph when nothing smaller is flagged.
    """
    for pieces in (p.items, split_sentences(p.text)):
        if not pieces:
            continue
        if pieces is p.items and under_heading:
            return list(pieces)
        flagged = [s for s, r in zip(pieces, clf.predict(pieces)) if r.shortcoming]
        if flagged:
            return flagged
    return [p.text]


def build_digest(doc: Document, preds: Sequence[Prediction], clf: Classifier, taxonomy: Taxonomy | None = None,
                 summary_chars: int = SUMMARY_CHARS, source: str = "report") -> Digest:
    """Digest of a parsed report; ``preds[i]`` is the classifier's prediction for ``doc.paragraphs[i]``.

    ``source`` names the report in errors (a file name, an upload).
    """
    if len(preds) != len(doc.paragraphs):
        raise FazhiError("digest", f"got {len(preds)} predictions for {len(doc.paragraphs)} paragraphs")
    if summary_chars < 1:
        raise FazhiError("summary_chars", f"must be positive, got {summary_chars}")
    taxonomy = taxonomy or load_taxonomy()
    body = [(p, r) for p, r in zip(doc.paragraphs, preds) if p.kind == "body"]
    if not body:
        raise FazhiError(source, "no body paragraphs to digest (empty or only page furniture)")

    labels = list(clf.labels)
    cover = coverage([r.category for _, r in body], labels)
    missing = [c for c in labels if cover[c] == 0 and c != taxonomy.default]

    shortcomings: list[Shortcoming] = []
    stated: list[Shortcoming] = []  # those under a heading that announces shortcomings
    for p, r in body:
        if not r.shortcoming:
            continue
        under_heading = any(rx.search(h) for h in p.heading_path for rx in taxonomy.shortcoming_headings)
        items = _shortcoming_items(p, under_heading, clf)
        item_preds = clf.predict(items) if len(items) > 1 else [r]
        found = [Shortcoming(t, ir.category, p.id) for t, ir in zip(items, item_preds)]
        shortcomings += found
        stated += found if under_heading else []

    figures = [Figure(v, u, w, r.category, p.id) for p, r in body for v, u, w in find_figures(p.text)]

    sentences = [_Sentence(s, r.category, _ORDER * k + j) for k, (p, r) in enumerate(body)
                 for j, s in enumerate(split_sentences(p.text))
                 if len(s) >= MIN_SENTENCE_CHARS and not r.shortcoming and not _is_title(s, p)]
    highlights: dict[str, list[str]] = {}
    summary_parts: list[_Sentence] = []
    if sentences:
        vectors = normalize(TfidfVectorizer(analyzer="char", ngram_range=(1, 2)).fit_transform(
            [s.text for s in sentences])).tocsr()
        rank = _centrality(vectors)
        # categories in order of how much of the report they fill, ties in the label scheme's order (a
        # set's order changes from one process to the next, and the summary with it)
        for cat in sorted({s.category for s in sentences}, key=lambda c: (-cover[c], labels.index(c))):
            idx = [i for i, s in enumerate(sentences) if s.category == cat]
            chosen = _pick(idx, rank, vectors, HIGHLIGHTS_PER_CATEGORY)
            highlights[cat] = [sentences[i].text for i in chosen]
            if cat != taxonomy.default:
                # a short central sentence leaves room in the summary for the other areas
                short = [i for i in idx if len(sentences[i].text) <= max(60, summary_chars // 4)]
                summary_parts.append(sentences[max(short, key=lambda i: rank[i]) if short else chosen[0]])
    if shortcomings:
        # prefer what the report admits in its own shortcomings section
        first = (stated or shortcomings)[0]
        summary_parts.insert(1, _Sentence(split_sentences(first.text)[0], first.category, _order(body, first.paragraph_id)))
    return Digest(_fit(summary_parts, summary_chars), cover, missing, shortcomings, figures, highlights)


def _is_title(sentence: str, p: Paragraph) -> bool:
    """Whether ``sentence`` is only the numbered short title of ``p`` ("1.推进综合行政执法改革。")."""
    return bool(p.title) and p.title in sentence and len(sentence) <= len(p.title) + 6


def _order(body: list[tuple[Paragraph, Prediction]], paragraph_id: str) -> int:
    return _ORDER * next(k for k, (p, _) in enumerate(body) if p.id == paragraph_id)


def _fit(parts: list[_Sentence], budget: int) -> str:
    """Take ``parts`` in priority order while they fit in ``budget`` characters; join in reading order."""
    taken: list[_Sentence] = []
    used = 0
    for s in parts:
        if used + len(s.text) <= budget:
            taken.append(s)
            used += len(s.text)
    if not taken and parts:  # even the best sentence is too long: cut it
        return parts[0].text[: budget - 1] + "…"
    return "".join(s.text for s in sorted(taken, key=lambda s: s.order))
