"""OCR benchmark: reports rendered as image-only PDFs (a CJK font, 150 dpi, as a scanner would
give them), read back through OCR, and compared with their text.

Figures: pages/s; character accuracy (1 − CER after NFKC, whitespace ignored); the share of the
text version's body paragraphs recovered with their outline level (the same kind and level, at
least 90% alike); the share of paragraphs whose tags (category, shortcoming) equal the text
version's.
"""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path
from typing import Sequence

from fazhi.corpora.document import Paragraph
from fazhi.errors import FazhiError

DPI = 150
FONT_PT = 10.5
FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
         "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


def _font(size: int):
    from PIL import ImageFont

    for path in FONTS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    raise FazhiError("ocr benchmark", "no CJK font found (make setup installs fonts-wqy-microhei)")


def render_pages(text: str, dpi: int = DPI):
    """A4 page images (PIL, greyscale) of ``text``: one paragraph per line, body paragraphs indented
    two characters, lines filled to the right margin as typeset reports are."""
    from PIL import Image, ImageDraw

    size = round(FONT_PT / 72 * dpi)
    font = _font(size)
    width, height = round(8.27 * dpi), round(11.69 * dpi)
    margin, step = round(dpi), round(size * 1.6)
    pages, y = [], height
    draw = None
    for line in text.splitlines():
        if not line.strip():
            continue
        from fazhi.corpora.outline import match_marker

        indent = "" if match_marker(line) or len(line) < 24 else "　　"
        rows, row = [], ""
        for ch in indent + line.strip():
            if font.getlength(row + ch) > width - 2 * margin:
                rows.append(row)
                row = ""
            row += ch
        rows.append(row)
        for r in rows:
            if y + step > height - margin:
                pages.append(Image.new("L", (width, height), 255))
                draw, y = ImageDraw.Draw(pages[-1]), margin
            draw.text((margin, y), r, fill=0, font=font)
            y += step
        y += step // 3
    return pages


def scan_pdf(text: str, path: str | Path, dpi: int = DPI) -> Path:
    """An image-only PDF of ``text`` (no text layer), like a scanned report."""
    return save_pdf(render_pages(text, dpi), path, dpi)


def save_pdf(pages, path: str | Path, dpi: int = DPI) -> Path:
    """Page images (PIL) as one image-only PDF."""
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=dpi)
    return Path(path)


def normalize(text: str) -> str:
    """What OCR is judged on: NFKC (a printed "," and "，" look alike, so width is not the
    reader's to know) without whitespace."""
    return unicodedata.normalize("NFKC", "".join(text.split()))


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of ``hypothesis`` against ``reference``, both normalized: edit distance
    over the reference's length."""
    from rapidfuzz.distance import Levenshtein

    ref, hyp = normalize(reference), normalize(hypothesis)
    return Levenshtein.distance(ref, hyp) / max(len(ref), 1)


def align(truth: Sequence[Paragraph], got: Sequence[Paragraph], min_ratio: float = 90.0) -> dict[int, int]:
    """For paragraphs of the text version, the OCR'd paragraph that is the same one: same kind and
    outline level, normalized texts at least ``min_ratio``% alike (rapidfuzz ratio), taken in order."""
    from rapidfuzz import fuzz

    pairs, start = {}, 0
    for i, p in enumerate(truth):
        for j in range(start, len(got)):
            q = got[j]
            if q.kind == p.kind and q.level == p.level and fuzz.ratio(normalize(p.text), normalize(q.text)) >= min_ratio:
                pairs[i], start = j, j + 1
                break
    return pairs


def run_ocr_bench(reports: Sequence[Path], work: Path, model: str | None = "rules") -> dict:
    """Render each report, OCR it back, and compare (figures per report and overall)."""
    from fazhi.analysis import Analyzer
    from fazhi.corpora import parse_text, read_text

    work.mkdir(parents=True, exist_ok=True)
    analyzer = Analyzer(model)
    rows, pages_total, seconds_total = [], 0, 0.0
    for report in reports:
        text = read_text(report)
        pages = render_pages(text)
        pdf = save_pdf(pages, work / (report.stem + ".scan.pdf"))
        start = time.perf_counter()
        ocr_text = read_text(pdf)
        seconds = time.perf_counter() - start
        truth, got = parse_text(text), parse_text(ocr_text)
        pairs = align(truth.paragraphs, got.paragraphs)
        body = [i for i, p in enumerate(truth.paragraphs) if p.kind == "body"]
        recovered = sum(i in pairs for i in body)
        a, b = analyzer.analyze(truth).predictions, analyzer.analyze(got).predictions
        # a paragraph OCR lost counts as a disagreement
        same = sum(i in pairs and (a[i].category, a[i].shortcoming) == (b[pairs[i]].category, b[pairs[i]].shortcoming)
                   for i in range(len(a)))
        n_pages = len(pages)
        rows.append({"report": report.name, "pages": n_pages, "seconds": round(seconds, 2),
                     "char_accuracy": round(1 - cer("\n".join(p.text for p in truth.paragraphs),
                                                    "\n".join(p.text for p in got.paragraphs)), 4),
                     "body_paragraphs": len(body), "body_recovered": round(recovered / max(len(body), 1), 4),
                     "tags_equal": round(same / max(len(truth.paragraphs), 1), 4)})
        pages_total += n_pages
        seconds_total += seconds
    weights = [r["body_paragraphs"] for r in rows]
    mean = lambda k: round(sum(r[k] * w for r, w in zip(rows, weights)) / max(sum(weights), 1), 4)  # noqa: E731
    return {"reports": rows, "pages": pages_total, "pages_per_s": round(pages_total / seconds_total, 3),
            "char_accuracy": mean("char_accuracy"), "body_recovered": mean("body_recovered"),
            "tags_equal": mean("tags_equal"), "dpi": DPI, "model": model or "release"}
