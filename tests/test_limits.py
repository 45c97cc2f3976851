"""Bounded work: huge reports, zip bombs and Flate bombs end in one clear line, not a crash."""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
import zipfile
import zlib

import pytest

from conftest import SAMPLE, write_docx, write_pdf
from fazhi.corpora.reader import read_bytes, read_text
from fazhi.errors import LimitError


def big_report(path, paragraphs: int):
    """A report of ``paragraphs`` numbered body paragraphs (the sample's, repeated): ~2 MB at 10,000."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    body = [line for line in lines if len(line) > 30]
    path.write_text("\n".join(lines[:3] + [f"{i + 1}. {body[i % len(body)]}" for i in range(paragraphs)]),
                    encoding="utf-8")
    return path


def fazhi(*args, env=None, memory_gb: float | None = None):
    def limit():
        if memory_gb:
            resource.setrlimit(resource.RLIMIT_AS, (int(memory_gb * 2**30),) * 2)

    return subprocess.run([sys.executable, "-m", "fazhi.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, preexec_fn=limit)


def test_a_report_over_the_paragraph_limit_is_one_line_exit_2(tmp_path):
    big = big_report(tmp_path / "big.txt", 10_000)
    result = fazhi("summarize", str(big), "--model", "rules", "--format", "json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (f"fazhi: error: {big}: report has 10000 paragraphs, over the limit "
                                     "FAZHI_MAX_REPORT_PARAGRAPHS=5000")


@pytest.mark.slow
def test_a_10000_paragraph_report_digests_in_linear_memory(tmp_path):
    """Measured: 3 s and 0.27 GB with the rules model on 2 cores (the dense TextRank graph needed
    more than 5 GB at 6,000 paragraphs); the address space here is capped at 3 GB."""
    big = big_report(tmp_path / "big.txt", 10_000)
    result = fazhi("summarize", str(big), "--model", "rules", "--format", "json",
                   env={"FAZHI_MAX_REPORT_PARAGRAPHS": "20000"}, memory_gb=3)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"summary"' in result.stdout and '"coverage"' in result.stdout


def test_a_zip_bomb_docx_is_refused_before_inflating(tmp_path):
    docx = write_docx(SAMPLE.read_text(encoding="utf-8"), tmp_path / "ok.docx")
    buf = io.BytesIO(docx.read_bytes())
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/media/pad.bin", b"\0" * (80 * 2**20))  # 80 MB of zeros, ~80 KB deflated
    data = buf.getvalue()
    assert len(data) < 2**20
    with pytest.raises(LimitError, match="over the limit FAZHI_MAX_INFLATED_BYTES=67108864"):
        read_bytes(data, ".docx", "bomb.docx")
    assert "依法" in read_bytes(docx.read_bytes(), ".docx", "ok.docx")  # an ordinary .docx still reads


def pdf_with_stream(payload: bytes) -> bytes:
    """A one-page PDF whose content stream is ``payload``, Flate-compressed."""
    stream = zlib.compress(payload, 9)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_a_flate_bomb_pdf_is_refused_before_inflating(tmp_path):
    bomb = pdf_with_stream(b" " * (200 * 2**20))  # 200 MB of spaces in a ~200 KB file
    assert len(bomb) < 2**20
    with pytest.raises(LimitError, match="FAZHI_MAX_INFLATED_BYTES"):
        read_bytes(bomb, ".pdf", "bomb.pdf")
    assert "依法" in read_text(write_pdf(SAMPLE.read_text(encoding="utf-8"), tmp_path / "ok.pdf"))


def test_the_inflation_limit_is_a_setting(tmp_path, monkeypatch):
    docx = write_docx(SAMPLE.read_text(encoding="utf-8"), tmp_path / "ok.docx")
    monkeypatch.setenv("FAZHI_MAX_INFLATED_BYTES", "1000")
    with pytest.raises(LimitError, match="FAZHI_MAX_INFLATED_BYTES=1000"):
        read_text(docx)


def test_the_api_answers_413_for_a_long_report_and_a_bomb(tmp_path):
    from fastapi.testclient import TestClient

    from fazhi.serving.app import create_app
    from fazhi.settings import Settings

    settings = Settings(db=tmp_path / "l.db", model="rules", api_keys="k", max_report_paragraphs=100)
    docx = write_docx(SAMPLE.read_text(encoding="utf-8"), tmp_path / "ok.docx")
    buf = io.BytesIO(docx.read_bytes())
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/media/pad.bin", b"\0" * (80 * 2**20))
    with TestClient(create_app(settings)) as client:
        long = big_report(tmp_path / "long.txt", 150).read_text(encoding="utf-8")
        r = client.post("/v1/reports", json={"text": long}, headers={"X-API-Key": "k"})
        assert r.status_code == 413 and "FAZHI_MAX_REPORT_PARAGRAPHS=100" in r.json()["error"]["message"]
        r = client.post("/v1/reports", files={"file": ("bomb.docx", buf.getvalue())}, headers={"X-API-Key": "k"})
        assert r.status_code == 413 and "FAZHI_MAX_INFLATED_BYTES" in r.json()["error"]["message"]
        assert client.get("/v1/reports").json()["items"] == []  # nothing half-stored
        assert client.get("/healthz").status_code == 200


def test_flate_inside_flate_counts_every_layer():
    inner = zlib.compress(b" " * (200 * 2**20), 9)
    pdf = pdf_with_stream(b"")
    nested = pdf.replace(b"/Filter /FlateDecode", b"/Filter [/FlateDecode /FlateDecode]")
    stream = zlib.compress(inner, 9)
    start = nested.index(b"stream\n") + len(b"stream\n")
    nested = nested[:start] + stream + nested[nested.index(b"\nendstream"):]
    assert len(nested) < 20_000
    with pytest.raises(LimitError, match="FAZHI_MAX_INFLATED_BYTES"):
        read_bytes(nested, ".pdf", "nested.pdf")


def test_a_huge_scanned_page_is_refused_before_rendering():
    from fazhi.settings import Settings

    page = pdf_with_stream(b"").replace(b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 14400 14400]")
    with pytest.raises(LimitError, match="pixels"):
        read_bytes(page, ".pdf", "huge.pdf", Settings(ocr="force"))


def test_broken_utf16_is_a_clear_error():
    from fazhi.errors import FazhiError

    with pytest.raises(FazhiError, match="broken UTF-16"):
        read_bytes(b"\xff\xfe\x00\xd8A\x00", ".txt", "u16.txt")
