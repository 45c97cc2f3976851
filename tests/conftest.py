"""Shared fixtures: the shared corpora beside the project, and file converters."""

from __future__ import annotations

import getpass
import glob
import json
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from fazhi.corpora.dataset import build
from fazhi.corpora.synthesis import write_reports
from fazhi.corpora.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REPORTS = sorted((SHARED / "corpora" / "reports").glob("*.txt"))
GOLD_DIR = SHARED / "gold" / "dev"
SAMPLE = ROOT / "fazhi" / "data" / "sample_report.txt"
BASE = SHARED / "models" / "multilingual-e5-small-zh-q4"
TEXTS = ["全年办理行政复议案件12件,综合纠错率20%,行政机关负责人出庭应诉率100%。",
         "1.加强执法人员资格管理。组织执法人员培训考试,合格率98%。",
         "部分部门法治工作力量比较薄弱,有待进一步加强。"]


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


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    reports = write_reports(root / "synthetic", 12, seed=7)
    return build([*reports, SAMPLE], root / "dd", load_taxonomy(), validation=0.25, progress=False)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A 2-layer BERT with the real Chinese tokenizer and random weights."""
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-base")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(BASE / name, out / name)
    config = BertConfig(vocab_size=28679, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=1)
    BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(corpus, tiny_base, tmp_path_factory):
    from fazhi.training.train import TrainArgs, train

    out = tmp_path_factory.mktemp("tiny-model") / "m"
    data = out.parent / "dd"
    corpus.save_to_disk(str(data))
    summary = train(TrainArgs(data=str(data), base_model=str(tiny_base), out=str(out), epochs=10, batch_size=16,
                              lr=1e-2, max_length=64, lora_r=4, patience=10, progress=False))
    return out, summary


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory):
    """The tiny model with its ONNX export (float32 and int8) beside it."""
    from fazhi.training.export import export_onnx

    model_dir = tmp_path_factory.mktemp("onnx") / "m"
    shutil.copytree(tiny_model[0], model_dir)
    export_onnx(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_tfidf(corpus, tmp_path_factory):
    """The TF-IDF baseline fitted on the small corpus and saved."""
    from fazhi.models.tfidf import TfidfClassifier

    rows = corpus["train"]
    model = TfidfClassifier().fit(rows["text"], rows["category"], rows["shortcoming"], rows["heading_path"])
    return model.save(tmp_path_factory.mktemp("tfidf") / "t")


class PostgresServer:
    """A throwaway PostgreSQL server on a free loopback port, from the Debian binaries that `make
    setup` installs; as root it runs as the ``postgres`` user (initdb refuses root)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or \
            [p for p in [shutil.which("initdb")] if p]
        if not found:
            pytest.skip("PostgreSQL server binaries not found: install Debian's postgresql (make setup does)")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pytest.skip("psycopg not installed: pip install -e '.[dev]' (make setup does)")
        self.bin = Path(found[-1]).parent
        self.as_user = []
        if getpass.getuser() == "root":
            if subprocess.run(["id", "postgres"], capture_output=True).returncode:
                pytest.skip("running as root and no postgres user to run the server as (Debian's package makes one)")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = Path(tempfile.mkdtemp(prefix="fazhi-pg-"))
        if self.as_user:
            shutil.chown(self.data, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run("initdb", "-D", str(self.data / "db"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.data} "
                   "-c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data / "db"), "-o", options, "-l", str(self.data / "log"), "-w", "start")
        self.databases = 0

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{tool} failed: {done.stderr.strip() or done.stdout.strip()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self.databases += 1
        name = f"fazhi_test_{self.databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session (skipped, with the reason, where none can run)."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """The URL of a new empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "api.db")
    return request.getfixturevalue("postgres").database()
