"""Scanned reports: image-only and mixed PDFs and page images read by OCR, and what goes wrong
with scans (blank pages, photos, corrupt files) ending in one clear line."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPORTS, SAMPLE, write_pdf
from fazhi.corpora import parse_text, read_text
from fazhi.errors import FazhiError, LimitError
from fazhi.settings import Settings
from fazhi.training.ocrbench import align, cer, render_pages, scan_pdf

pytestmark = pytest.mark.slow
REPORT_004 = next(p for p in REPORTS if p.name.startswith("004_"))


def fazhi(*args):
    return subprocess.run([sys.executable, "-m", "fazhi.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("report", [SAMPLE, REPORT_004], ids=["sample", "report-004"])
def test_a_scanned_report_reads_back_with_its_outline_and_tags(report, tmp_path):
    from fazhi.analysis import Analyzer

    text = read_text(report)
    scanned = read_text(scan_pdf(text, tmp_path / "scan.pdf"))
    assert 1 - cer(text, scanned) >= 0.97
    truth, got = parse_text(text), parse_text(scanned)
    pairs = align(truth.paragraphs, got.paragraphs)
    body = [i for i, p in enumerate(truth.paragraphs) if p.kind == "body"]
    assert sum(i in pairs for i in body) >= 0.95 * len(body)
    rules = Analyzer("rules")
    a, b = rules.analyze(truth).predictions, rules.analyze(got).predictions
    same = sum(i in pairs and (a[i].category, a[i].shortcoming) == (b[pairs[i]].category, b[pairs[i]].shortcoming)
               for i in range(len(a)))
    assert same >= 0.95 * len(a)


def test_a_mixed_pdf_is_read_page_by_page(tmp_path):
    """Page 1 has a text layer, page 2 is a scan: both come back, in order, and only page 2 is OCR'd."""
    import pypdfium2 as pdfium

    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    cut = lines.index("二、存在的不足")
    text_pdf = write_pdf("\n".join(lines[:cut]), tmp_path / "text.pdf")
    scan = scan_pdf("\n".join(lines[cut:]), tmp_path / "scan.pdf")
    mixed = pdfium.PdfDocument(str(text_pdf))
    mixed.import_pages(pdfium.PdfDocument(str(scan)))
    mixed.save(tmp_path / "mixed.pdf")
    got = read_text(tmp_path / "mixed.pdf")
    assert got.index("强化合法性审查") < got.index("存在的不足") < got.index("持证比例偏低")
    with pytest.raises(FazhiError, match="no text found|OCR is off"):
        read_text(scan, settings=Settings(ocr="off"))
    text_only = read_text(tmp_path / "mixed.pdf", settings=Settings(ocr="off"))
    assert "强化合法性审查" in text_only and "持证比例偏低" not in text_only


def test_page_images_are_read(tmp_path):
    page = render_pages(SAMPLE.read_text(encoding="utf-8"))[0]
    for ext in ("png", "jpg", "tif"):
        page.save(tmp_path / f"p.{ext}")
        result = fazhi("parse", str(tmp_path / f"p.{ext}"), "--format", "json")
        assert result.returncode == 0, result.stderr
        assert "法治政府建设情况的报告" in result.stdout
    off = fazhi("parse", str(tmp_path / "p.png"), "--ocr", "off")
    assert off.returncode == 2 and "OCR is off" in off.stderr


@pytest.mark.parametrize("make, problem", [
    (lambda p: _save(p / "blank.pdf", _blank()), "no text found"),
    (lambda p: _save(p / "blank.png", _blank()), "no text found by OCR"),
    (lambda p: _save(p / "photo.png", _noise()), "no text found by OCR"),
    (lambda p: (p / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage") and p / "bad.png", "not a readable image"),
    (lambda p: (p / "bad.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<<>>\nstream\nxx") and p / "bad.pdf", "PDF"),
], ids=["blank pdf page", "blank image", "photo without text", "corrupt image", "corrupt pdf"])
def test_scans_without_text_are_one_clear_line(tmp_path, make, problem):
    path = make(tmp_path)
    result = fazhi("parse", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"fazhi: error: {path}: ") and problem in result.stderr


def _blank():
    from PIL import Image

    return Image.new("L", (1240, 1754), 255)


def _noise():
    from PIL import Image

    rng = np.random.default_rng(0)
    smooth = rng.normal(128, 40, (88, 62, 3)).clip(0, 255).astype(np.uint8)  # a blurry "photo"
    return Image.fromarray(smooth).resize((1240, 1754))


def _save(path, image):
    image.save(path, resolution=150) if path.suffix == ".pdf" else image.save(path)
    return path


def test_ocr_pages_and_image_size_are_bounded(tmp_path):
    scan = scan_pdf(SAMPLE.read_text(encoding="utf-8"), tmp_path / "scan.pdf")
    with pytest.raises(LimitError, match="FAZHI_MAX_OCR_PAGES=1"):
        read_text(scan, settings=Settings(max_ocr_pages=1))
    from PIL import Image

    huge = tmp_path / "huge.png"
    Image.new("1", (9000, 9000), 1).save(huge)  # 81 million pixels in a few kilobytes
    with pytest.raises(LimitError, match="pixels"):
        read_text(huge)


def test_the_api_takes_a_scanned_upload(tmp_path):
    from fastapi.testclient import TestClient

    from fazhi.serving.app import create_app

    scan = scan_pdf(SAMPLE.read_text(encoding="utf-8"), tmp_path / "scan.pdf")
    key = {"X-API-Key": "k"}
    with TestClient(create_app(Settings(db=tmp_path / "o.db", model="rules", api_keys="k"))) as client:
        r = client.post("/v1/reports", files={"file": ("scan.pdf", scan.read_bytes())}, headers=key)
        assert r.status_code == 201, r.text
        assert any("行政复议" in p["text"] for p in r.json()["paragraphs"])
    with TestClient(create_app(Settings(db=tmp_path / "o.db", model="rules", api_keys="k", max_ocr_pages=1))) as client:
        r = client.post("/v1/reports", files={"file": ("scan.pdf", scan.read_bytes())}, headers=key)
        assert r.status_code == 413 and "FAZHI_MAX_OCR_PAGES=1" in r.json()["error"]["message"]


def test_bench_ocr_reports_every_figure(tmp_path):
    import json

    result = fazhi("bench-ocr", str(SAMPLE), "--work", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["pages"] == 2 and r["pages_per_s"] > 0 and (tmp_path / "sample_report.scan.pdf").is_file()
    assert r["char_accuracy"] >= 0.97 and r["body_recovered"] >= 0.95 and r["tags_equal"] >= 0.95
