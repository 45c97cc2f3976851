"""The document object every later stage reads: meta + outline-structured paragraphs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Paragraph:
    """One line of a report's body.

    ``start``/``end`` are character offsets into :attr:`Document.text` (end exclusive).
    ``level`` is the outline depth (1 = top-level heading); a body paragraph sits one
    level below its nearest heading. ``title`` is the short title that opens a numbered
    body paragraph ("1.落实…职责。县委…" → "落实…职责"). ``items`` are the inline
    enumerations ("一是…二是…", "(1)…(2)…") found in the text.
    """

    id: str
    kind: str  # "heading" | "body"
    level: int
    heading_path: list[str]
    text: str
    start: int
    end: int
    title: str | None = None
    items: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Document:
    """A parsed report: cleaned text, metadata and its paragraphs in reading order."""

    text: str
    meta: dict[str, Any]
    paragraphs: list[Paragraph]

    @property
    def body(self) -> list[Paragraph]:
        return [p for p in self.paragraphs if p.kind == "body"]

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "paragraphs": [p.to_dict() for p in self.paragraphs]}
