"""Labelling functions: each looks at one kind of evidence and votes or abstains.

Category evidence, from most to least specific: the paragraph's own title, the
nearest heading above it with a decisive cue, a preamble position, the cues in the
paragraph text, and finally the default category. Shortcoming evidence: a heading
that announces shortcomings, or a sentence that states one. :func:`combine` turns
the votes into one silver label with a confidence and the name of the function
that decided it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fazhi.corpora.document import Document
from fazhi.corpora.outline import match_marker, split_title
from fazhi.corpora.taxonomy import Taxonomy


@dataclass(frozen=True)
class Context:
    """What a labelling function may look at for one paragraph."""

    text: str
    kind: str = "body"
    title: str | None = None
    heading_path: tuple[str, ...] | None = None  # None: outline unknown (a paragraph sent alone)
    preamble: bool = False  # body text before the first heading of a report that has headings


@dataclass(frozen=True)
class Vote:
    label: str | bool
    confidence: float
    source: str


@dataclass(frozen=True)
class SilverLabel:
    category: str
    category_confidence: float
    category_source: str
    shortcoming: bool
    shortcoming_confidence: float
    shortcoming_source: str

    @property
    def confidence(self) -> float:
        """Joint confidence of both labels (product, in [0, 1])."""
        return round(self.category_confidence * self.shortcoming_confidence, 4)


def strip_marker(text: str) -> str:
    marker = match_marker(text)
    return text[marker[1].end():] if marker else text


def context_for(text: str, heading_path: list[str] | None = None, kind: str = "body",
                preamble: bool = False) -> Context:
    """Build a context for a bare paragraph, reading its title from its own text."""
    title = split_title(strip_marker(text).strip())[0] if match_marker(text) else None
    return Context(text=text, kind=kind, title=title,
                   heading_path=tuple(heading_path) if heading_path is not None else None, preamble=preamble)


def contexts_for_document(doc: Document) -> list[Context]:
    """One context per paragraph of a parsed report, in order."""
    has_headings = any(p.kind == "heading" for p in doc.paragraphs)
    out, seen_heading = [], False
    for p in doc.paragraphs:
        seen_heading = seen_heading or p.kind == "heading"
        out.append(Context(text=p.text, kind=p.kind, title=p.title, heading_path=tuple(p.heading_path),
                           preamble=has_headings and not seen_heading and p.kind == "body"))
    return out


def _decisive(scores: dict[str, int], min_score: int = 1, ratio: float = 1.0) -> str | None:
    """The top category if it beats the runner-up (by more than ``ratio``×) and reaches min_score."""
    if not scores:
        return None
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    top, n = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0
    return top if n >= min_score and n > ratio * second else None


# ---- category labelling functions -------------------------------------------------

def lf_title(ctx: Context, tax: Taxonomy) -> Vote | None:
    """A numbered paragraph's own title ("2.进一步加强规范性文件管理。…")."""
    source = ctx.title if ctx.kind == "body" else (strip_marker(ctx.text) if ctx.kind == "heading" else None)
    label = _decisive(tax.scores(source)) if source else None
    return Vote(label, 0.9, "title") if label else None


def lf_heading(ctx: Context, tax: Taxonomy) -> Vote | None:
    """The nearest heading above the paragraph whose cues decide a category."""
    for distance, heading in enumerate(reversed(ctx.heading_path or ())):
        label = _decisive(tax.scores(strip_marker(heading)))
        if label:
            return Vote(label, round(0.85 - 0.05 * distance, 2), "heading")
    return None


def lf_preamble(ctx: Context, tax: Taxonomy) -> Vote | None:
    """Opening paragraphs before the first heading are overall statements."""
    return Vote(tax.default, 0.7, "preamble") if ctx.preamble else None


def lf_text(ctx: Context, tax: Taxonomy) -> Vote | None:
    """Cue counts in the paragraph text, when one category clearly dominates."""
    scores = tax.scores(ctx.text)
    label = _decisive(scores, min_score=2, ratio=2.0)
    return Vote(label, min(0.8, 0.5 + 0.05 * scores[label]), "text") if label else None


CATEGORY_LFS = (lf_title, lf_heading, lf_preamble, lf_text)


# ---- shortcoming labelling functions ----------------------------------------------

def lf_shortcoming_section(ctx: Context, tax: Taxonomy) -> Vote | None:
    """Inside (or being) a section headed 存在的不足 / 问题 / 差距 / 薄弱环节."""
    headings = list(ctx.heading_path or ()) + ([ctx.text] if ctx.kind == "heading" else [])
    hit = any(p.search(h) for h in headings for p in tax.shortcoming_headings)
    return Vote(True, 0.9, "shortcoming_section") if hit else None


def lf_shortcoming_text(ctx: Context, tax: Taxonomy) -> Vote | None:
    """A sentence that states an existing shortcoming (仍存在…, 有待进一步…, …不足,)."""
    hit = ctx.kind == "body" and any(p.search(ctx.text) for p in tax.shortcoming_text)
    return Vote(True, 0.8, "shortcoming_text") if hit else None


SHORTCOMING_LFS = (lf_shortcoming_section, lf_shortcoming_text)


def combine(category_votes: list[Vote], shortcoming_votes: list[Vote], tax: Taxonomy) -> SilverLabel:
    """Resolve the votes into one label each.

    Category: the first vote in order of specificity wins (title > heading > preamble
    > text); a later vote that agrees raises the confidence, one that disagrees
    lowers it. No vote: the default category at confidence 0.3.
    Shortcoming: any positive vote makes it true (the most confident one is the
    source; two agreeing raise the confidence); none: false at 0.7.
    """
    if category_votes:
        win = category_votes[0]
        conf = win.confidence
        for other in category_votes[1:]:
            conf = conf + 0.5 * (1 - conf) * other.confidence if other.label == win.label else conf * (1 - 0.3 * other.confidence)
        category = (win.label, round(conf, 4), win.source)
    else:
        category = (tax.default, 0.3, "default")
    if shortcoming_votes:
        best = max(shortcoming_votes, key=lambda v: v.confidence)
        conf = best.confidence
        for other in shortcoming_votes:
            if other is not best:
                conf = conf + 0.5 * (1 - conf) * other.confidence
        shortcoming = (True, round(conf, 4), best.source)
    else:
        shortcoming = (False, 0.7, "default")
    return SilverLabel(*category, *shortcoming)


def label(ctx: Context, tax: Taxonomy) -> SilverLabel:
    """Run every labelling function on one paragraph and combine the votes."""
    cat = [v for lf in CATEGORY_LFS if (v := lf(ctx, tax))]
    sc = [v for lf in SHORTCOMING_LFS if (v := lf(ctx, tax))]
    return combine(cat, sc, tax)

