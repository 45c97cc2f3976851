"""Scanned pages to text: RapidOCR (PP-OCRv4 Chinese detection and recognition, ONNX models
inside the ``rapidocr-onnxruntime`` wheel) and a layout pass that turns OCR lines into the
paragraphs the outline parser reads.

OCR gives one box per printed line (sometimes several per line). Lines are grouped into rows,
and a row starts a new paragraph when it is indented, when the row above stopped short of the
right margin, when a wider gap separates them, or when it opens with a heading number;
otherwise it continues the paragraph above (Chinese wraps with no hyphen or space). Page
numbers, headers and footers repeated on most pages, stamps and seals (text on a slant, or
recognised with low confidence) are left out.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from fazhi.errors import FazhiError

MIN_SCORE = 0.5  # recognition confidence below which a box is noise (seal fragments, photos)
MAX_SLANT = 0.12  # a box whose top edge rises more than this per unit of width is a stamp or seal text
RENDER_DPI = 150  # what a page is rendered at for OCR: 10.5-pt text is ~22 px high
_PAGE_NUMBER = re.compile(r"^[-—–\s]*(第\s*)?\d{1,4}(\s*页)?(\s*[/／共]\s*\d{1,4}\s*页?)?[-—–\s]*$")
_SENTENCE_END = "。！？；：”）」』】…"


@dataclass
class Line:
    """One OCR'd row of text on a page; coordinates in pixels, y down."""

    text: str
    x0: float
    x1: float
    y0: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0


# One OCR at a time in a process: ONNX Runtime already uses every core for one page, and
# pdfium (which renders the pages) must never be called from two threads at once.
LOCK = threading.RLock()


@lru_cache(maxsize=1)
def _engine():
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise FazhiError("ocr", f"RapidOCR is not installed ({err})") from None
    return RapidOCR()


def read_lines(image: np.ndarray) -> list[Line]:
    """The text rows of one page image (H, W, 3) uint8 RGB, top to bottom."""
    with LOCK:
        # no angle classifier: report pages are upright, and it turned whole lines of them upside down
        result, _ = _engine()(image, use_cls=False)
    boxes = []
    for box, text, score in result or []:
        pts = np.asarray(box, dtype=float)  # four corners: top-left, top-right, bottom-right, bottom-left
        width = max(pts[1, 0] - pts[0, 0], 1.0)
        if float(score) < MIN_SCORE or abs(pts[1, 1] - pts[0, 1]) / width > MAX_SLANT or not text.strip():
            continue
        boxes.append(Line(text.strip(), pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()))
    return _rows(boxes)


def _rows(boxes: list[Line]) -> list[Line]:
    """Boxes on one printed line joined left to right (a wide gap becomes a space)."""
    rows: list[list[Line]] = []
    for b in sorted(boxes, key=lambda b: (b.y0 + b.y1) / 2):
        centre = (b.y0 + b.y1) / 2
        if rows and abs(centre - np.mean([(r.y0 + r.y1) / 2 for r in rows[-1]])) < 0.5 * b.height:
            rows[-1].append(b)
        else:
            rows.append([b])
    out = []
    for row in rows:
        row.sort(key=lambda b: b.x0)
        text = row[0].text
        for left, right in zip(row, row[1:]):
            text += (" " if right.x0 - left.x1 > left.height else "") + right.text
        out.append(Line(text, row[0].x0, row[-1].x1, min(b.y0 for b in row), max(b.y1 for b in row)))
    return out


def _furniture(pages: Sequence[list[Line]], heights: Sequence[float]) -> set[str]:
    """Texts (digits ignored) in the top or bottom 8% of at least half the pages: running headers
    and footers."""
    if len(pages) < 2:
        return set()
    seen: dict[str, int] = {}
    for lines, h in zip(pages, heights):
        keys = {re.sub(r"\d+", "#", l.text) for l in lines if l.y1 < 0.08 * h or l.y0 > 0.92 * h}
        for k in keys:
            seen[k] = seen.get(k, 0) + 1
    return {k for k, n in seen.items() if n >= max(2, len(pages) / 2)}


def _starts_paragraph(line: Line, prev: Line, left: float, right: float, char: float) -> bool:
    """Whether ``line`` opens a paragraph rather than continuing ``prev``, the row above it."""
    from fazhi.corpora.outline import match_marker

    ended = prev.text[-1] in _SENTENCE_END
    short = prev.x1 < right - 2 * char  # the row above stopped before the right margin
    return (line.x0 > left + 1.2 * char  # an indented first line
            or line.y0 - prev.y1 > 1.2 * char  # a wider gap than between wrapped lines
            or (short and (ended or prev.x1 < left + 0.67 * (right - left)))  # a paragraph's last row, a title
            or ((short or ended) and match_marker(line.text) is not None))  # "（二）…" after a heading or "。"


@dataclass
class PageText:
    """The paragraphs of one page, and what joining it to its neighbours needs to know."""

    paragraphs: list[str]
    opens_indented: bool = False  # its first row is indented: a new paragraph, whatever came before
    ends_full: bool = False  # its last row runs to the right margin: the paragraph may go on overleaf


def page_text(lines: list[Line], repeated: set[str] = frozenset()) -> PageText:
    """The paragraphs of one OCR'd page (``repeated``: running headers and footers to leave out)."""
    lines = [l for l in lines if not _PAGE_NUMBER.match(l.text) and re.sub(r"\d+", "#", l.text) not in repeated]
    if not lines:
        return PageText([])
    left = float(np.percentile([l.x0 for l in lines], 10))
    right = float(np.percentile([l.x1 for l in lines], 90))
    char = float(np.median([l.height for l in lines]))
    out = [lines[0].text]
    for prev, line in zip(lines, lines[1:]):
        if _starts_paragraph(line, prev, left, right, char):
            out.append(line.text)
        else:
            out[-1] += line.text
    return PageText(out, lines[0].x0 > left + 1.2 * char, lines[-1].x1 >= right - 2 * char)


def join_pages(pages: Sequence[PageText]) -> list[str]:
    """Paragraphs of consecutive pages in reading order: a paragraph cut by a page end (last row
    full, no closing punctuation) goes on with the next page's first row unless that is indented."""
    out: list[str] = []
    carry = False
    for page in pages:
        for i, text in enumerate(page.paragraphs):
            if i == 0 and carry and out and not page.opens_indented and out[-1][-1] not in _SENTENCE_END:
                out[-1] += text
            else:
                out.append(text)
        if page.paragraphs:
            carry = page.ends_full
    return out


def ocr_pages(images: Iterable[np.ndarray], name: str, total: int | None = None) -> list[PageText]:
    """Each page image (H, W, 3) uint8 RGB read by OCR, with a progress bar on a terminal."""
    from tqdm.auto import tqdm

    pages, heights = [], []
    for image in tqdm(images, desc=f"OCR {name}", unit="page", total=total, disable=None, leave=False):
        pages.append(read_lines(image))
        heights.append(float(image.shape[0]))
    repeated = _furniture(pages, heights)
    return [page_text(lines, repeated) for lines in pages]


def ocr_images(images: Iterable[np.ndarray], name: str, total: int | None = None) -> str:
    """The text of page images, one paragraph per line (empty when no page holds readable text)."""
    return "\n".join(join_pages(ocr_pages(images, name, total)))
