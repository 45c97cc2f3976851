"""One interface for every classifier, and the loader that picks one by name or path."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence

from fazhi.corpora.document import Document
from fazhi.errors import FazhiError

HeadingPaths = Sequence[Sequence[str] | None] | None


@dataclass
class Prediction:
    """Labels of one paragraph: ``scores`` maps every category to its probability (sums to 1)."""

    category: str
    scores: dict[str, float]
    shortcoming: bool
    shortcoming_score: float

    def to_dict(self) -> dict:
        return asdict(self)


class Classifier(Protocol):
    """What every model offers: batched, deterministic predictions for paragraphs."""

    name: str
    labels: list[str]

    def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None) -> list[Prediction]:
        """One :class:`Prediction` per text; ``heading_paths[i]`` is the outline above text i (or None)."""
        ...


def document_inputs(doc: Document) -> tuple[list[str], list[list[str] | None]]:
    """Texts and heading paths of a parsed report, as every classifier takes them.

    A report without any heading gives no outline (None) rather than an empty one,
    so that no paragraph of it is mistaken for an opening statement.
    """
    has_outline = any(p.kind == "heading" for p in doc.paragraphs)
    return [p.text for p in doc.paragraphs], [list(p.heading_path) if has_outline else None for p in doc.paragraphs]


def tagged_paragraphs(doc: Document, preds: Sequence[Prediction]) -> list[dict]:
    """Each paragraph's fields with its prediction's (the ``fazhi tag --format json`` shape)."""
    return [{**p.to_dict(), **r.to_dict()} for p, r in zip(doc.paragraphs, preds)]


def load_classifier(spec: str | Path | None = None) -> Classifier:
    """``rules``, ``tfidf`` (the trained baseline), or a model directory (default: the release model)."""
    from fazhi.models.registry import resolve

    return resolve(spec)


def check_unicode(value: str) -> str:
    """``value`` unchanged, or ValueError when it holds a lone surrogate (JSON's "\\ud800"), which
    no tokenizer can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate, not valid Unicode text") from None
    return value


def check_inputs(texts: Sequence[str], heading_paths: HeadingPaths) -> list[Sequence[str] | None]:
    if heading_paths is not None and len(heading_paths) != len(texts):
        raise FazhiError("heading_paths", f"got {len(heading_paths)} heading paths for {len(texts)} texts")
    return list(heading_paths) if heading_paths is not None else [None] * len(texts)
