"""Reading reports into outline-structured documents, silver labelling, datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fazhi.corpora.document import Document, Paragraph
from fazhi.corpora.outline import parse_text, to_markdown
from fazhi.corpora.reader import read_text

if TYPE_CHECKING:
    from fazhi.settings import Settings


def read_document(path: str | Path, max_bytes: int | None = None, settings: Settings | None = None) -> Document:
    """Read and parse a report file (txt, html, docx, pdf, or a scanned page image); ``settings``
    (default: from the environment) give the limits and the OCR mode."""
    return parse_text(read_text(path, max_bytes=max_bytes, settings=settings))


__all__ = ["Document", "Paragraph", "parse_text", "read_document", "read_text", "to_markdown"]
