"""Reading files: encodings, formats, and one clear error for every bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import SAMPLE, write_docx
from fazhi.corpora import read_text
from fazhi.errors import FazhiError

TEXT = "一、依法行政\n全年办理行政复议案件12件，综合纠错率20%。\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_simplified_encodings(tmp_path, encoding):
    path = tmp_path / "r.txt"
    path.write_bytes(TEXT.encode(encoding))
    assert read_text(path) == TEXT


def test_big5(tmp_path):
    text = "一、依法行政\n全年辦理行政復議案件十二件，依法化解行政爭議，維護群眾合法權益。\n" * 3
    path = tmp_path / "r.txt"
    path.write_bytes(text.encode("big5"))
    assert read_text(path) == text


def test_html_drops_scripts_and_keeps_blocks(tmp_path):
    path = tmp_path / "r.htm"
    path.write_bytes("<html><head><style>p{}</style></head><body><div>一、依法行政</div><p>全年办理案件12件。</p>"
                     "<script>alert(1)</script></body></html>".encode("gbk"))
    lines = [line for line in read_text(path).splitlines() if line.strip()]
    assert lines == ["一、依法行政", "全年办理案件12件。"]


def _ole(tmp_path):
    path = tmp_path / "locked.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 1024)
    return path


def _truncated_docx(tmp_path):
    good = write_docx(TEXT, tmp_path / "good.docx")
    path = tmp_path / "cut.docx"
    path.write_bytes(good.read_bytes()[:2000])
    return path


def _image_pdf(tmp_path):
    from reportlab.pdfgen import canvas

    path = tmp_path / "scan.pdf"
    c = canvas.Canvas(str(path))
    c.rect(100, 100, 300, 400, fill=1)
    c.save()
    return path


def _write(name, data):
    def make(tmp_path):
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return make


BAD = {
    "empty": (_write("empty.txt", b""), "empty"),
    "whitespace": (_write("blank.txt", b"  \n\n "), "no text"),
    "binary": (_write("junk.txt", bytes(range(256)) * 40), "binary"),
    "unknown extension": (_write("r.xls", b"abc"), "unsupported file type .xls"),
    "truncated docx": (_truncated_docx, "corrupt or truncated .docx"),
    "password docx": (_ole, "password-protected"),
    "pdf with no text at all": (_image_pdf, "no text found"),
    "garbage pdf": (_write("bad.pdf", b"%PDF-1.4 nonsense"), "PDF"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_raise_one_clear_error(tmp_path, case):
    make, expected = BAD[case]
    path = make(tmp_path)
    with pytest.raises(FazhiError) as info:
        read_text(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_size_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.txt"
    path.write_bytes(TEXT.encode() * 100)
    with pytest.raises(FazhiError, match="over the limit of 1000 bytes"):
        read_text(path, max_bytes=1000)
    monkeypatch.setenv("FAZHI_MAX_BYTES", "500")
    with pytest.raises(FazhiError, match="over the limit of 500 bytes"):
        read_text(path)


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "fazhi.cli", *map(str, args)], capture_output=True, text=True,
                          input=stdin)


@pytest.mark.parametrize("case", ["empty", "binary", "password docx", "pdf with no text at all"])
def test_cli_parse_bad_input_exit_2_one_line(tmp_path, case):
    make, expected = BAD[case]
    result = run_cli("parse", make(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_file_and_oversize(tmp_path):
    result = run_cli("parse", tmp_path / "nope.txt")
    assert result.returncode == 2 and "no such file" in result.stderr
    result = run_cli("parse", SAMPLE, "--max-bytes", "100")
    assert result.returncode == 2 and "over the limit of 100 bytes" in result.stderr


def test_cli_parse_json_contract_and_md():
    import json

    result = run_cli("parse", SAMPLE, "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"meta", "paragraphs"}
    for p in doc["paragraphs"]:
        assert {"id", "kind", "level", "heading_path", "text"} <= set(p) and p["kind"] in ("heading", "body")
    md = run_cli("parse", SAMPLE, "--format", "md").stdout
    assert md.startswith("# 青溪县人民政府关于2023年度法治政府建设情况的报告")
    assert "## 二、存在的不足" in md


@pytest.mark.parametrize("command, expected", [("parse", "expected json or md"), ("tag", "expected json or md"),
                                               ("summarize", "expected md, json or html")])
def test_bad_format_is_one_line_naming_the_option(command, expected):
    result = run_cli(command, SAMPLE, "--format", "pdf", *(["--model", "rules"] if command != "parse" else []))
    assert result.returncode == 2
    assert result.stderr.strip() == f"fazhi: error: --format: {expected}, got 'pdf'"
