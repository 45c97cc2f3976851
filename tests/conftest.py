"""Shared fixtures: the shared corpora beside the project, and file converters."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REPORTS = sorted((SHARED / "corpora" / "reports").glob("*.txt"))
GOLD_DIR = SHARED / "gold" / "dev"
SAMPLE = ROOT / "fazhi" / "data" / "sample_report.txt"


def gold_rows(report: Path) -> list[dict]:
    path = GOLD_DIR / (report.stem + ".jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_docx(text: str, path: Path) -> Path:
    import docx

    document = docx.Document()
    for line in text.splitlines():
        document.add_paragraph(line)
    document.save(path)
    return path


def write_pdf(text: str, path: Path) -> Path:
    """A text PDF with reportlab's built-in CID font STSong-Light (no font file needed)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    style = ParagraphStyle("zh", fontName="STSong-Light", fontSize=11, leading=16, spaceAfter=12, wordWrap="CJK")
    story = [Paragraph(escape(line), style) for line in text.splitlines() if line.strip()]
    SimpleDocTemplate(str(path), pagesize=A4).build(story)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the shared corpora must sit beside the project")
    return SHARED
