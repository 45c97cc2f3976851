"""Where tagged reports live: a small interface and its embedded SQLite implementation.

The endpoints speak only to :class:`ReportStore`; :func:`open_store` picks the implementation
from a URL, so another database can be added without touching them.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Protocol

from fazhi.errors import FazhiError

# Each entry moves the schema one version up (PRAGMA user_version); never change what a released entry
# makes. Entries are idempotent (IF NOT EXISTS), so a migration that another process finished is a no-op.
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS reports (
        id TEXT PRIMARY KEY,
        title TEXT,
        region TEXT,
        year INTEGER,
        source TEXT,
        model TEXT NOT NULL,
        created_at TEXT NOT NULL,
        meta TEXT NOT NULL,
        digest TEXT
    );
    CREATE INDEX IF NOT EXISTS reports_region_year ON reports(region, year);
    CREATE TABLE IF NOT EXISTS paragraphs (
        rowid INTEGER PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        paragraph_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        level INTEGER NOT NULL,
        heading_path TEXT NOT NULL,
        text TEXT NOT NULL,
        category TEXT NOT NULL,
        scores TEXT NOT NULL,
        shortcoming INTEGER NOT NULL,
        shortcoming_score REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS paragraphs_report ON paragraphs(report_id, position);
    CREATE INDEX IF NOT EXISTS paragraphs_category ON paragraphs(category, shortcoming);
    -- trigram full-text index: substring search that works for Chinese (queries of 3+ characters)
    CREATE VIRTUAL TABLE IF NOT EXISTS paragraphs_fts USING fts5(text, content='paragraphs', content_rowid='rowid',
                                                   tokenize='trigram');
    CREATE TRIGGER IF NOT EXISTS paragraphs_ai AFTER INSERT ON paragraphs BEGIN
        INSERT INTO paragraphs_fts(rowid, text) VALUES (new.rowid, new.text);
    END;
    CREATE TRIGGER IF NOT EXISTS paragraphs_ad AFTER DELETE ON paragraphs BEGIN
        INSERT INTO paragraphs_fts(paragraphs_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    END;
    """,
    # reviewers' corrections: one row per changed label field, the model's label kept in paragraphs
    """
    CREATE TABLE IF NOT EXISTS corrections (
        rowid INTEGER PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        paragraph_id TEXT NOT NULL,
        field TEXT NOT NULL CHECK (field IN ('category', 'shortcoming')),
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS corrections_paragraph ON corrections(report_id, paragraph_id, rowid);
    """,
]


@dataclass
class ReportRecord:
    """A tagged report ready to store: ``paragraphs`` are dicts of the ``fazhi tag --format json`` shape."""

    meta: dict[str, Any]
    paragraphs: list[dict[str, Any]]
    model: str
    title: str | None = None
    region: str | None = None
    year: int | None = None
    source: str | None = None
    digest: dict[str, Any] | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


@dataclass
class ReportQuery:
    region: str | None = None
    year: int | None = None
    q: str | None = None  # text the title contains


@dataclass
class ParagraphQuery:
    category: str | None = None
    shortcoming: bool | None = None
    region: str | None = None
    year: int | None = None
    q: str | None = None
    kind: str | None = "body"
    report_id: str | None = None


class ReportStore(Protocol):
    def add(self, record: ReportRecord) -> str:
        """Store a report and its paragraphs atomically; return its id."""

    def get(self, report_id: str) -> dict | None: ...

    def delete(self, report_id: str) -> bool: ...

    def list(self, limit: int, cursor: str | None = None,
             query: ReportQuery | None = None) -> tuple[list[dict], str | None]: ...

    def correct(self, report_id: str, paragraph_id: str, labels: dict[str, Any], reviewer: str) -> dict | None:
        """Record a reviewer's labels (``category`` and/or ``shortcoming``) for a paragraph; the
        paragraph as it now reads, or None when there is no such paragraph."""

    def corrections(self, report_id: str | None = None) -> list[dict]:
        """Every correction (of one report), oldest first (report, paragraph, field, old, new, reviewer, time)."""

    def overview(self) -> list[dict]:
        """Per stored report: region, year, title, and per category its body paragraphs and shortcomings."""

    def paragraphs(self, query: ParagraphQuery, limit: int, cursor: str | None = None) -> tuple[list[dict], str | None]:
        """Matching paragraphs in storage order and the cursor of the next page (None at the end)."""

    def writable(self) -> bool: ...


def open_store(url: str | Path, busy_timeout: float = 5.0) -> ReportStore:
    """A store for ``url``: a file path or ``sqlite:///path`` (``:memory:`` is not shared, so not
    offered); a write waits ``busy_timeout`` seconds for another writer's lock."""
    text = str(url)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    elif "://" in text:
        raise FazhiError(text, "unsupported database URL; use a file path or sqlite:///path")
    return SQLiteStore(Path(text), busy_timeout)


def encode_cursor(value: int | str) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise FazhiError("cursor", "not a cursor returned by this server") from None


MIGRATION_TIMEOUT_S = 60.0  # opening waits longer: another process may be creating the schema


class StoreBusy(Exception):
    """The database is locked by another writer for longer than the busy timeout (HTTP 503)."""


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of ``script`` one by one (a trigger's body stays whole), so that they
    run inside the caller's transaction, which ``executescript`` would commit."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""
    if buf.strip() and not all(l.strip().startswith("--") or not l.strip() for l in buf.splitlines()):
        raise ValueError(f"incomplete SQL statement: {buf.strip()[:60]}")


class SQLiteStore:
    """SQLite in WAL mode: readers never wait for the writer; one transaction per report."""

    def __init__(self, path: Path, busy_timeout: float = 5.0):
        self.path = path
        self.busy_timeout = busy_timeout
        deadline = time.monotonic() + MIGRATION_TIMEOUT_S
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with self._connect(timeout=MIGRATION_TIMEOUT_S) as db:
                    self._migrate(db)
                    db.execute("PRAGMA journal_mode=WAL")
                return
            except StoreBusy:
                # SQLite answers "locked" without waiting while another connection creates the file or
                # switches it to WAL: try again until that is done
                if time.monotonic() > deadline:
                    raise FazhiError(str(path), f"cannot open the database: locked for {MIGRATION_TIMEOUT_S:g} s") \
                        from None
                time.sleep(0.05)
            except (sqlite3.DatabaseError, OSError) as err:
                raise FazhiError(str(path), f"cannot open the database: {err}") from None

    @contextmanager
    def _connect(self, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        """A connection that waits up to ``timeout`` seconds (default ``busy_timeout``) for another
        writer's lock, then raises :class:`StoreBusy`."""
        db = sqlite3.connect(self.path, timeout=self.busy_timeout if timeout is None else timeout,
                             isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise StoreBusy(f"database {self.path} is locked by another writer; retry shortly") from None
            raise
        finally:
            db.close()

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Bring the schema up to date in one transaction that holds the write lock from its start,
        so two processes opening a new database never both create it."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise FazhiError("database", f"schema version {version} is newer than this fazhi ({len(MIGRATIONS)})")
            for n, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={n}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def add(self, record: ReportRecord) -> str:
        rows = [(record.id, p["id"], i, p["kind"], p["level"], json.dumps(p["heading_path"], ensure_ascii=False),
                 p["text"], p["category"], json.dumps(p["scores"]), int(p["shortcoming"]), p["shortcoming_score"])
                for i, p in enumerate(record.paragraphs)]
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT INTO reports VALUES (?,?,?,?,?,?,?,?,?)",
                           (record.id, record.title, record.region, record.year, record.source, record.model,
                            record.created_at, json.dumps(record.meta, ensure_ascii=False),
                            json.dumps(record.digest, ensure_ascii=False) if record.digest is not None else None))
                db.executemany("INSERT INTO paragraphs (report_id, paragraph_id, position, kind, level, heading_path, "
                               "text, category, scores, shortcoming, shortcoming_score) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                               rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return record.id

    @staticmethod
    def _report(row: sqlite3.Row) -> dict:
        return {"id": row["id"], "title": row["title"], "region": row["region"], "year": row["year"],
                "source": row["source"], "model": row["model"], "created_at": row["created_at"]}

    def get(self, report_id: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM reports WHERE id = ?", (report_id,)).fetchone()
            if row is None:
                return None
            paras = db.execute("SELECT * FROM paragraphs WHERE report_id = ? ORDER BY position", (report_id,)).fetchall()
            fixes = self._latest(db, [(report_id, p["paragraph_id"]) for p in paras])
        return {**self._report(row), "meta": json.loads(row["meta"]),
                "digest": json.loads(row["digest"]) if row["digest"] else None,
                "paragraphs": [self._paragraph(p, fixes) for p in paras]}

    @staticmethod
    def _latest(db: sqlite3.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """For (report, paragraph) keys, the reviewers' current labels: ``{"category"?, "shortcoming"?,
        "by", "at"}`` of the latest correction of each field."""
        out: dict[tuple[str, str], dict] = {}
        for report_id in {r for r, _ in keys}:
            wanted = {p for r, p in keys if r == report_id}
            for c in db.execute("SELECT * FROM corrections WHERE report_id = ? ORDER BY rowid", (report_id,)):
                if c["paragraph_id"] in wanted:
                    fix = out.setdefault((report_id, c["paragraph_id"]), {})
                    fix[c["field"]] = c["new"] == "true" if c["field"] == "shortcoming" else c["new"]
                    fix.update(by=c["reviewer"], at=c["created_at"])
        return out

    def correct(self, report_id: str, paragraph_id: str, labels: dict[str, Any], reviewer: str) -> dict | None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT * FROM paragraphs WHERE report_id = ? AND paragraph_id = ?",
                                 (report_id, paragraph_id)).fetchone()
                if row is None:
                    db.execute("ROLLBACK")
                    return None
                current = {**{"category": row["category"], "shortcoming": bool(row["shortcoming"])},
                           **self._latest(db, [(report_id, paragraph_id)]).get((report_id, paragraph_id), {})}
                for field in ("category", "shortcoming"):
                    if field in labels and labels[field] != current[field]:
                        text = lambda v: str(v).lower() if field == "shortcoming" else str(v)  # noqa: E731
                        db.execute("INSERT INTO corrections (report_id, paragraph_id, field, old, new, reviewer, "
                                   "created_at) VALUES (?,?,?,?,?,?,?)", (report_id, paragraph_id, field,
                                                                         text(current[field]), text(labels[field]),
                                                                         reviewer, now))
                fixes = self._latest(db, [(report_id, paragraph_id)])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return {"report_id": report_id, **self._paragraph(row, fixes)}

    def corrections(self, report_id: str | None = None) -> list[dict]:
        where, args = ("WHERE report_id = ?", (report_id,)) if report_id else ("", ())
        with self._connect() as db:
            return [dict(r) for r in db.execute("SELECT report_id, paragraph_id, field, old, new, reviewer, created_at "
                                                f"FROM corrections {where} ORDER BY rowid", args)]

    def overview(self) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT r.id, r.title, r.region, r.year, p.category, count(*) AS n, "
                              "sum(p.shortcoming) AS shortcomings FROM reports r JOIN paragraphs p "
                              "ON p.report_id = r.id WHERE p.kind = 'body' GROUP BY r.id, p.category "
                              "ORDER BY r.region, r.year, r.id").fetchall()
        out: dict[str, dict] = {}
        for r in rows:
            item = out.setdefault(r["id"], {"id": r["id"], "title": r["title"], "region": r["region"],
                                            "year": r["year"], "paragraphs": {}, "shortcomings": {}})
            item["paragraphs"][r["category"]] = r["n"]
            item["shortcomings"][r["category"]] = r["shortcomings"]
        return list(out.values())

    def delete(self, report_id: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM reports WHERE id = ?", (report_id,)).rowcount > 0

    def list(self, limit: int, cursor: str | None = None,
             query: ReportQuery | None = None) -> tuple[list[dict], str | None]:
        after = decode_cursor(cursor) if cursor else ""
        query = query or ReportQuery()
        where, args = ["r.created_at || r.id > ?"], [after]
        for column, value in (("r.region", query.region), ("r.year", query.year)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.q:
            where.append("instr(coalesce(r.title, ''), ?) > 0")
            args.append(query.q)
        with self._connect() as db:
            rows = db.execute("SELECT r.*, (SELECT count(*) FROM paragraphs p WHERE p.report_id = r.id) AS n "
                              f"FROM reports r WHERE {' AND '.join(where)} ORDER BY r.created_at || r.id LIMIT ?",
                              (*args, limit + 1)).fetchall()
        items = [{**self._report(r), "paragraphs": r["n"]} for r in rows[:limit]]
        more = len(rows) > limit
        return items, encode_cursor(rows[limit - 1]["created_at"] + rows[limit - 1]["id"]) if more else None

    @staticmethod
    def _paragraph(row: sqlite3.Row, fixes: dict[tuple[str, str], dict] | None = None) -> dict:
        """A stored paragraph: the model's labels, and under ``correction`` the reviewers' (or None)."""
        return {"id": row["paragraph_id"], "kind": row["kind"], "level": row["level"],
                "heading_path": json.loads(row["heading_path"]), "text": row["text"], "category": row["category"],
                "scores": json.loads(row["scores"]), "shortcoming": bool(row["shortcoming"]),
                "shortcoming_score": row["shortcoming_score"],
                "correction": (fixes or {}).get((row["report_id"], row["paragraph_id"]))}

    def paragraphs(self, query: ParagraphQuery, limit: int, cursor: str | None = None) -> tuple[list[dict], str | None]:
        after = decode_cursor(cursor) if cursor else "0"
        # a rowid: ASCII digits within SQLite's 64-bit integers (isdigit alone admits "²" and 10**30)
        if not (after.isascii() and after.isdigit() and int(after) < 2 ** 63):
            raise FazhiError("cursor", "not a cursor returned by this server")
        where, args = ["p.rowid > ?"], [int(after)]
        for column, value in (("p.category", query.category), ("r.region", query.region), ("r.year", query.year),
                              ("p.kind", query.kind), ("p.report_id", query.report_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.shortcoming is not None:
            where.append("p.shortcoming = ?")
            args.append(int(query.shortcoming))
        if query.q:
            if len(query.q) >= 3:  # the trigram index needs three characters; shorter queries scan
                where.append("p.rowid IN (SELECT rowid FROM paragraphs_fts WHERE paragraphs_fts MATCH ?)")
                args.append('"' + query.q.replace('"', '""') + '"')
            else:
                where.append("instr(p.text, ?) > 0")
                args.append(query.q)
        sql = ("SELECT p.*, r.title, r.region, r.year FROM paragraphs p JOIN reports r ON r.id = p.report_id "
               f"WHERE {' AND '.join(where)} ORDER BY p.rowid LIMIT ?")
        with self._connect() as db:
            rows = db.execute(sql, (*args, limit + 1)).fetchall()
            fixes = self._latest(db, [(r["report_id"], r["paragraph_id"]) for r in rows[:limit]])
        items = [{"report_id": r["report_id"], "title": r["title"], "region": r["region"], "year": r["year"],
                  **self._paragraph(r, fixes)} for r in rows[:limit]]
        return items, encode_cursor(rows[limit - 1]["rowid"]) if len(rows) > limit else None

    def writable(self) -> bool:
        try:
            with self._connect(timeout=0.5) as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
            return True
        except (sqlite3.Error, StoreBusy):
            return False
