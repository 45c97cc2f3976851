"""Turn a report file (txt, html, docx, pdf) into plain text, one paragraph per line.

Every failure is a :class:`FazhiError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from charset_normalizer import from_bytes

from fazhi.errors import FazhiError, LimitError

if TYPE_CHECKING:
    from fazhi.corpora.ocr import PageText
    from fazhi.settings import Settings

SUPPORTED = (".txt", ".html", ".htm", ".docx", ".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted docx and legacy .doc
_BLOCK_TAGS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "td")


def max_bytes_from_env() -> int:
    """The size limit in bytes: ``FAZHI_MAX_BYTES`` or 20 MB (a bad value: one-line FazhiError)."""
    from fazhi.settings import settings  # on use: a caller that passes max_bytes never loads pydantic-settings

    return settings().max_bytes


def read_text(path: str | Path, max_bytes: int | None = None, settings: Settings | None = None) -> str:
    """Read a report file and return its text (paragraphs separated by newlines); ``settings``
    (default: from the environment) give the limits and the OCR mode."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise FazhiError(name, "no such file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise FazhiError(name, f"unsupported file type {ext or '(none)'}; expected one of {', '.join(SUPPORTED)}")
    if settings is None:  # read once here, and handed on to read_bytes
        from fazhi.settings import settings as load

        settings = load()
    size = path.stat().st_size
    limit = max_bytes if max_bytes is not None else settings.max_bytes
    if size > limit:
        raise LimitError(name, f"file is {size} bytes, over the limit of {limit} bytes (FAZHI_MAX_BYTES)")
    if size == 0:
        raise FazhiError(name, "file is empty")
    return read_bytes(path.read_bytes(), ext, name, settings)


def iter_jsonl(lines, name: str):
    """Yield ``(line_number, object)`` for each non-blank JSON line of ``lines`` (str or, from a
    file opened in binary mode, UTF-8 bytes: then a line that is not UTF-8 is named); a bad line
    (not UTF-8, not JSON, nested past Python's recursion limit) is a FazhiError naming ``name:line``."""
    import json

    for n, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                raise FazhiError(f"{name}:{n}", "not UTF-8 text") from None
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as err:
            raise FazhiError(f"{name}:{n}", f"not valid JSON ({err.msg})") from None
        except RecursionError:
            raise FazhiError(f"{name}:{n}", "JSON nested too deeply") from None


def read_bytes(data: bytes, ext: str, name: str = "<input>", settings: Settings | None = None) -> str:
    """Decode the bytes of a file of type ``ext`` (one of ``SUPPORTED``). ``settings`` (default:
    from the environment) bound the work: a .docx or .pdf whose compressed parts inflate past
    ``max_inflated_bytes`` is a :class:`LimitError`, found before anything is inflated in full;
    scanned pages and images are read by OCR as ``ocr`` says, at most ``max_ocr_pages`` of them."""
    if settings is None:
        from fazhi.settings import settings as load

        settings = load()
    ext = ext.lower()
    if not data:
        raise FazhiError(name, "file is empty")
    if ext in (".docx", ".pdf"):
        (_check_zip if ext == ".docx" else _check_pdf_streams)(data, name, settings.max_inflated_bytes)
    if ext == ".docx":
        text = _docx_text(data, name)
    elif ext == ".pdf":
        text = _pdf_text(data, name, settings.ocr, settings.max_ocr_pages)
    elif ext in IMAGE_TYPES:
        if settings.ocr == "off":
            raise FazhiError(name, "an image is read only by OCR, and OCR is off (--ocr auto reads it)")
        text = _image_text(data, name, settings.max_ocr_pages)
    elif ext in (".html", ".htm"):
        text = _html_text(decode(data, name))
    elif ext == ".txt":
        text = decode(data, name)
    else:
        raise FazhiError(name, f"unsupported file type {ext or '(none)'}; expected one of {', '.join(SUPPORTED)}")
    if not text.strip():
        raise FazhiError(name, "no text found")
    return text


def decode(data: bytes, name: str = "<input>") -> str:
    """Decode text bytes in any common Chinese encoding (UTF-8 ± BOM, GB18030/GBK, Big5)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data[:4096]:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            try:
                return data.decode("utf-16")
            except UnicodeDecodeError:
                raise FazhiError(name, "cannot decode: broken UTF-16 text") from None
        raise FazhiError(name, "binary data, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # GB18030 is a superset of GBK/GB2312 and is strict enough that Big5 bytes
    # usually fail it; charset-normalizer decides the rest.
    best = from_bytes(data, cp_isolation=["gb18030", "big5", "utf_16", "cp1252"]).best()
    if best is None or best.encoding not in ("gb18030", "big5", "utf_16"):
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            raise FazhiError(name, "cannot decode: not UTF-8, GBK/GB18030 or Big5 text") from None
    else:
        text = str(best)
    if _looks_binary(text):
        raise FazhiError(name, "binary data, not text")
    return text


def _looks_binary(text: str) -> bool:
    """True when too few characters are CJK, ASCII printable or whitespace."""
    sample = text[:20000]
    good = sum(1 for c in sample if c.isprintable() or c in "\n\r\t")
    cjk = sum(1 for c in sample if "\u4e00" <= c <= "\u9fff")
    return good < 0.95 * len(sample) or (cjk == 0 and sum(c.isalpha() for c in sample) < 0.3 * len(sample))


def _html_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "head"]):
        tag.decompose()
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    return soup.get_text()


def _over(name: str, limit: int) -> LimitError:
    return LimitError(name, f"decompresses to more than {limit} bytes, over the limit FAZHI_MAX_INFLATED_BYTES={limit}")


def _check_zip(data: bytes, name: str, limit: int) -> None:
    """The sizes a .docx declares for its members, summed, against ``limit``. Reading a member
    never yields more than its declared size (zipfile stops there), so this bounds the inflation."""
    import io

    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError):
        return  # not a zip at all: _docx_text names the problem
    if sum(m.file_size for m in members) > limit:
        raise _over(name, limit)


_STREAM = re.compile(rb"stream\r?\n")


def _check_pdf_streams(data: bytes, name: str, limit: int) -> None:
    """Inflate every Flate stream of a PDF in bounded steps and stop once they pass ``limit``
    bytes in all. pdfminer inflates each stream whole in memory, so a 0.5 MB file can ask it
    for gigabytes; this pass costs one streaming inflate of the same data."""
    import zlib

    total = 0
    for m in _STREAM.finditer(data):
        end = data.find(b"endstream", m.end())
        if end < 0:
            break
        layer = data[m.end():end]
        # a stream may be Flate inside Flate (/Filter [/FlateDecode /FlateDecode]): each layer counts
        while layer[:1] == b"\x78":
            inflater, out, chunk = zlib.decompressobj(), [], layer
            try:
                while chunk and not inflater.eof:
                    piece = inflater.decompress(chunk, 1 << 20)
                    total += len(piece)
                    if total > limit:
                        raise _over(name, limit)
                    out.append(piece)
                    chunk = inflater.unconsumed_tail
            except zlib.error:
                break  # not Flate data: nothing more inflates
            layer = b"".join(out)


def _docx_text(data: bytes, name: str) -> str:
    import io

    import docx

    if data.startswith(_OLE_MAGIC):
        raise FazhiError(name, "password-protected (encrypted) or legacy .doc file, not a readable .docx")
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise FazhiError(name, f"corrupt or truncated .docx ({err.__class__.__name__})") from None
    except Exception as err:  # python-docx raises several package errors for broken parts
        raise FazhiError(name, f"unreadable .docx: {err}") from None
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append("\t".join(cell.text for cell in row.cells))
    return "\n".join(lines)




def _pdf_text(data: bytes, name: str, ocr: str = "auto", max_pages: int = 30) -> str:
    """One line per text box; a box broken by a page end is joined to its next part. Pages
    without a text layer are read by OCR (``ocr`` ``auto``), every page is (``force``), or
    none is (``off``: a PDF without any text layer is an error, as it always was)."""
    from fazhi.corpora.ocr import join_pages

    pages = _ocr_pdf(data, name, None, max_pages) if ocr == "force" else _pdf_layer(data, name)
    scanned = [i for i, page in enumerate(pages) if not page.paragraphs]
    if scanned and ocr == "auto":
        for i, page in zip(scanned, _ocr_pdf(data, name, scanned, max_pages)):
            pages[i] = page
    out = join_pages(pages)
    if not out:
        raise FazhiError(name, "PDF has no text layer (image-only or scanned PDF) and OCR is off (--ocr auto reads it)"
                         if ocr == "off" else "no text found, by the text layer or by OCR (blank or unreadable pages)")
    return "\n".join(out)


def _pdf_layer(data: bytes, name: str) -> list[PageText]:
    """Per page: the text boxes of its text layer, and whether its last line runs to the right margin."""
    import io

    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTTextBox
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfparser import PDFSyntaxError

    from fazhi.corpora.ocr import PageText

    pages = []
    try:
        for page in extract_pages(io.BytesIO(data), laparams=LAParams()):
            boxes = sorted((b for b in page if isinstance(b, LTTextBox)), key=lambda b: (-b.y1, b.x0))
            right = max((line.x1 for b in boxes for line in b), default=0.0)
            texts, full = [], False
            for box in boxes:
                text = "".join(line.get_text().strip("\n") for line in box).strip()
                if not text:
                    continue
                texts.append(text)
                lines = list(box)
                full = lines[-1].x1 >= right - 1.5 * (lines[-1].height or 10.0)
            pages.append(PageText(texts, ends_full=full))
    except (PDFPasswordIncorrect, PDFEncryptionError):
        raise FazhiError(name, "password-protected PDF") from None
    except PDFSyntaxError as err:
        raise FazhiError(name, f"corrupt PDF ({err})") from None
    except Exception as err:  # pdfminer has no single base error for broken files
        raise FazhiError(name, f"unreadable PDF: {err.__class__.__name__}: {err}") from None
    return pages


def _check_pages(name: str, n: int, limit: int) -> None:
    if n > limit:
        raise LimitError(name, f"{n} pages to read by OCR, over the limit FAZHI_MAX_OCR_PAGES={limit}")


def _ocr_pdf(data: bytes, name: str, pages: list[int] | None, max_pages: int) -> list[PageText]:
    """OCR of the PDF's ``pages`` (None: all), rendered at the OCR resolution."""
    import numpy as np
    import pypdfium2 as pdfium

    from fazhi.corpora.ocr import LOCK, RENDER_DPI, ocr_pages

    scale = RENDER_DPI / 72
    with LOCK:  # pdfium is not thread-safe, not even across documents
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as err:
            raise FazhiError(name, f"corrupt PDF ({err})") from None
        pages = list(range(len(pdf))) if pages is None else pages
        _check_pages(name, len(pages), max_pages)
        for i in pages:
            width, height = pdf[i].get_size()  # points
            if width * height * scale * scale > MAX_IMAGE_PIXELS:
                raise LimitError(name, f"page {i + 1} renders to {width * scale:.0f}×{height * scale:.0f} pixels, over "
                                       f"{MAX_IMAGE_PIXELS} pixels")

        def images():
            for i in pages:
                with LOCK:
                    bitmap = pdf[i].render(scale=scale)
                    image = np.asarray(bitmap.to_pil().convert("RGB"))
                yield image

        try:
            return ocr_pages(images(), name, total=len(pages))
        finally:
            pdf.close()


IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MAX_IMAGE_PIXELS = 60_000_000  # a 600-dpi A3 scan is 35 million; past this an image is a bomb, not a page


def _image_text(data: bytes, name: str, max_pages: int) -> str:
    """OCR of an image file (every frame of a multi-page TIFF)."""
    import io

    import numpy as np
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from fazhi.corpora.ocr import ocr_images

    def pages(image):
        for frame in ImageSequence.Iterator(image):  # one frame in memory at a time
            if frame.width * frame.height > MAX_IMAGE_PIXELS:
                raise LimitError(name, f"image of {frame.width}×{frame.height} pixels, over {MAX_IMAGE_PIXELS} pixels")
            yield np.asarray(frame.convert("RGB"))

    try:
        image = Image.open(io.BytesIO(data))
        frames = getattr(image, "n_frames", 1)
        _check_pages(name, frames, max_pages)
        text = ocr_images(pages(image), name, total=frames)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise FazhiError(name, f"not a readable image ({err.__class__.__name__})") from None
    if not text.strip():
        raise FazhiError(name, "no text found by OCR (a blank page or a picture without text)")
    return text
