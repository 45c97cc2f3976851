"""The SQLite store under contention: concurrent first opens, a writer holding the lock, bad paths."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient

from conftest import SAMPLE
from fazhi.errors import FazhiError
from fazhi.serving.app import create_app
from fazhi.serving.sqlite import SQLiteStore
from fazhi.serving.database import open_store
from fazhi.serving.store import MIGRATIONS, ReportRecord, StoreBusy
from fazhi.settings import Settings

OPEN = "import sys; from fazhi.serving.database import open_store; open_store(sys.argv[1]); print('ok')"


def test_two_processes_creating_one_database_both_succeed(tmp_path):
    """Each trial starts two processes on a new file at once; before migrations took the write
    lock first, one of them failed in 27 of 30 trials."""
    for trial in range(30):
        db = tmp_path / f"t{trial}.db"
        procs = [subprocess.Popen([sys.executable, "-c", OPEN, str(db)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_migration_is_idempotent(tmp_path):
    db = tmp_path / "m.db"
    SQLiteStore(db)
    with sqlite3.connect(db) as conn:  # as if another process had created the schema but not the version yet
        conn.execute("PRAGMA user_version=0")
    SQLiteStore(db)  # runs the migration again over the existing tables
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def hold_write_lock(db, seconds: float) -> threading.Event:
    """Another connection takes the write lock for ``seconds``; the event is set once it holds it."""
    held = threading.Event()

    def run():
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    threading.Thread(target=run, daemon=True).start()
    held.wait(5)
    return held


def test_a_locked_database_is_503_with_retry_after_and_the_server_stays_up(tmp_path):
    settings = Settings(db=tmp_path / "l.db", model="rules", api_keys="k", db_busy_timeout=0.3)
    with TestClient(create_app(settings)) as client:
        hold_write_lock(settings.db, 2.0)
        start = time.perf_counter()
        r = client.post("/v1/reports", json={"text": SAMPLE.read_text(encoding="utf-8")}, headers={"X-API-Key": "k"})
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.json()["error"]["code"] == "busy" and "locked" in r.json()["error"]["message"]
        assert time.perf_counter() - start < 1.9  # answered while the lock was still held
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/reports").status_code == 200  # WAL: reads go on during the lock
        time.sleep(2.2)
        r = client.post("/v1/reports", json={"text": SAMPLE.read_text(encoding="utf-8")}, headers={"X-API-Key": "k"})
        assert r.status_code == 201


def test_store_busy_is_raised_by_the_store_itself(tmp_path):
    from fazhi.serving.store import ReportRecord

    store = SQLiteStore(tmp_path / "b.db", busy_timeout=0.1)
    hold_write_lock(store.path, 1.0)
    with pytest.raises(StoreBusy, match="locked by another writer"):
        store.add(ReportRecord(meta={}, paragraphs=[], model="rules"))



def test_a_locked_postgres_table_is_503_and_reads_go_on(postgres):
    import psycopg

    settings = Settings(db=postgres.database(), model="rules", api_keys="k", db_busy_timeout=0.3)
    with TestClient(create_app(settings)) as client, psycopg.connect(settings.db) as other:
        other.execute("LOCK TABLE paragraphs IN EXCLUSIVE MODE")  # blocks writers, not readers
        r = client.post("/v1/reports", json={"text": SAMPLE.read_text(encoding="utf-8")}, headers={"X-API-Key": "k"})
        assert r.status_code == 503 and r.headers["Retry-After"] == "5" and "locked" in r.json()["error"]["message"]
        assert client.get("/v1/reports").status_code == 200
        other.rollback()
        r = client.post("/v1/reports", json={"text": SAMPLE.read_text(encoding="utf-8")}, headers={"X-API-Key": "k"})
        assert r.status_code == 201 and client.get("/v1/reports").json()["items"][0]["paragraphs"] > 10

@pytest.mark.parametrize("make_path, problem", [
    (lambda p: (p / "notadb.db", (p / "notadb.db").write_bytes(b"not a database at all" * 100))[0],
     "cannot open the database: file is not a database"),
    (lambda p: p, "cannot open the database"),  # a directory
    (lambda p: (p / "ro").mkdir(mode=0o500) or p / "ro" / "sub" / "x.db", "cannot open the database"),
    (lambda p: (p / "file").write_text("") or p / "file" / "x2.db", "cannot open the database"),  # parent is a file
])
def test_serve_rejects_a_bad_db_in_one_line_before_loading_the_model(tmp_path, make_path, problem):
    import os

    path = make_path(tmp_path)
    if os.geteuid() == 0 and path.name == "x.db":
        pytest.skip("root writes into read-only directories")
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "serve", "--db", str(path), "--model",
                             str(tmp_path / "no-such-model")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"fazhi: error: {path}: {problem}")


def test_open_store_names_the_path(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_bytes(b"\0" * 4096 + b"garbage")
    with pytest.raises(FazhiError, match=str(bad)):
        SQLiteStore(bad)


def set_schema_version(db_url: str, version: int) -> None:
    if "://" in db_url:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE fazhi_schema SET version = %s", (version,))
    else:
        with sqlite3.connect(db_url) as conn:
            conn.execute(f"PRAGMA user_version={version}")


def test_store_is_atomic_and_migrated(db_url):
    store = open_store(db_url)
    good = {"id": "p1", "kind": "body", "level": 1, "heading_path": [], "text": "文本", "category": "other",
            "scores": {"other": 1.0}, "shortcoming": False, "shortcoming_score": 0.1}
    with pytest.raises(Exception, match="(?i)not.null"):  # sqlite3.IntegrityError, psycopg's NotNullViolation
        store.add(ReportRecord(meta={}, paragraphs=[good, {**good, "id": "p2", "text": None}], model="rules", id="r1"))
    assert store.get("r1") is None and store.list(10)[0] == []
    store.add(ReportRecord(meta={}, paragraphs=[good], model="rules", id="r2"))
    again = open_store(db_url if "://" in db_url else f"sqlite:///{db_url}")  # migrates nothing, keeps data
    assert again.get("r2")["paragraphs"][0]["text"] == "文本"
    assert again.get("r2")["paragraphs"][0]["shortcoming_score"] == 0.1  # a double on both databases
    store.close(), again.close()
    set_schema_version(db_url, len(MIGRATIONS) + 1)
    with pytest.raises(FazhiError, match="newer"):
        open_store(db_url)
    with pytest.raises(FazhiError, match="unsupported database URL"):
        open_store("mysql://localhost/fazhi")


def test_sqlite_keeps_its_version_in_the_file_and_runs_in_wal_mode(tmp_path):
    open_store(tmp_path / "s.db")
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_postgres_processes_opening_one_new_database_all_succeed(postgres):
    """Four processes migrate one new PostgreSQL database at once: the advisory lock lets one create
    the schema while the others wait, then find it done."""
    url = postgres.database()
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM fazhi_schema").fetchall() == [(len(MIGRATIONS),)]
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'paragraphs'")}
    assert "paragraphs_text_trgm" in indexes


def test_postgres_errors_are_one_line_and_hide_the_password(postgres):
    with pytest.raises(FazhiError) as err:
        open_store(postgres.url("no_such_db").replace("postgres@", "postgres:secret@"))
    assert "secret" not in str(err.value) and "no_such_db" in str(err.value) and "\n" not in str(err.value)
