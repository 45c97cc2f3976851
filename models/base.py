"""One interface for every classifier: its inputs, its :class:`Prediction`, and their checks."""

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
        """One :class:`Prediction` per text, in order; ``heading_paths[i]`` is the list of headings above
        text i (None or ``[]``: none). ``scores`` follow ``labels``' order and sum to 1."""
        ...


def document_inputs(doc: Document) -> tuple[list[str], list[list[str]]]:
    """Texts and heading paths of a parsed report, as every classifier takes them."""
    return [p.text for p in doc.paragraphs], [list(p.heading_path) for p in doc.paragraphs]


def tagged_paragraphs(doc: Document, preds: Sequence[Prediction]) -> list[dict]:
    """Each paragraph's fields with its prediction's (the ``fazhi tag --format json`` shape)."""
    return [{**p.to_dict(), **r.to_dict()} for p, r in zip(doc.paragraphs, preds)]


def check_unicode(value: str) -> str:
    """``value`` unchanged, or ValueError when it holds a lone surrogate (JSON's "\\ud800"), which
    no tokenizer can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate, not valid Unicode text") from None
    return value


def check_inputs(texts: Sequence[str], heading_paths: HeadingPaths) -> list[list[str]]:
    """One heading path per text, ``[]`` where none is given: for every classifier, None and ``[]``
    mean the same (no heading above the paragraph)."""
    if heading_paths is not None and len(heading_paths) != len(texts):
        raise FazhiError("heading_paths", f"got {len(heading_paths)} heading paths for {len(texts)} texts")
    return [list(p or []) for p in heading_paths] if heading_paths is not None else [[] for _ in texts]
