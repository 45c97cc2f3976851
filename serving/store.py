"""Where tagged reports live: the interface the endpoints speak to, and its queries, written once.

The endpoints speak only to :class:`ReportStore`. :class:`SQLStore` holds every query for both
databases, SQLite (:mod:`fazhi.serving.sqlite`, the default) and PostgreSQL
(:mod:`fazhi.serving.postgres`); they differ only in connections, transactions, the schema's
version number and full-text search. :func:`fazhi.serving.database.open_store` picks one from a URL.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Protocol

from fazhi.errors import FazhiError

# Each entry moves the schema one version up, the same entries for both databases in their own
# dialects; never change what a released entry makes. Entries are idempotent (IF NOT EXISTS), so a
# migration that another process finished is a no-op.
MIGRATIONS: list[dict[str, str]] = [
    {
        "sqlite": """
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
        # text compared bytewise (COLLATE "C") as SQLite does, so both order and page alike
        "postgresql": """
    CREATE TABLE IF NOT EXISTS reports (
        id TEXT COLLATE "C" PRIMARY KEY,
        title TEXT COLLATE "C",
        region TEXT COLLATE "C",
        year INTEGER,
        source TEXT,
        model TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        meta TEXT NOT NULL,
        digest TEXT
    );
    CREATE INDEX IF NOT EXISTS reports_region_year ON reports(region, year);
    CREATE TABLE IF NOT EXISTS paragraphs (
        rowid BIGSERIAL PRIMARY KEY,
        report_id TEXT COLLATE "C" NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        paragraph_id TEXT COLLATE "C" NOT NULL,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        level INTEGER NOT NULL,
        heading_path TEXT NOT NULL,
        text TEXT NOT NULL,
        category TEXT NOT NULL,
        scores TEXT NOT NULL,
        shortcoming INTEGER NOT NULL,
        shortcoming_score DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX IF NOT EXISTS paragraphs_report ON paragraphs(report_id, position);
    CREATE INDEX IF NOT EXISTS paragraphs_category ON paragraphs(category, shortcoming);
    -- pg_trgm: character trigrams index substring search (LIKE), which suits Chinese text
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX IF NOT EXISTS paragraphs_text_trgm ON paragraphs USING gin (text gin_trgm_ops);
    """,
    },
    # reviewers' corrections: one row per changed label field, the model's label kept in paragraphs
    {
        "sqlite": """
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
        "postgresql": """
    CREATE TABLE IF NOT EXISTS corrections (
        rowid BIGSERIAL PRIMARY KEY,
        report_id TEXT COLLATE "C" NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        paragraph_id TEXT COLLATE "C" NOT NULL,
        field TEXT NOT NULL CHECK (field IN ('category', 'shortcoming')),
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS corrections_paragraph ON corrections(report_id, paragraph_id, rowid);
    """,
    },
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

    def close(self) -> None:
        """Release the store's connections (the server calls it when it stops)."""


def encode_cursor(value: int | str) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise FazhiError("cursor", "not a cursor returned by this server") from None


MIGRATION_TIMEOUT_S = 60.0  # opening waits longer: another process may be creating the schema


class StoreBusy(Exception):
    """The database is locked by another writer, or out of connections, for longer than the busy
    timeout (HTTP 503)."""


def statements(script: str) -> Iterator[str]:
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


def _flag(value: str) -> bool:
    return value == "true"


class SQLStore:
    """Every query of :class:`ReportStore`, over a DB-API connection whose rows read by column
    name and whose parameters are ``?``. A subclass gives :meth:`_read` and :meth:`_write`
    (a connection outside / inside a write transaction), the schema version and full-text search."""

    dialect: str  # the key of this database's DDL in MIGRATIONS

    def _read(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _schema_version(self, db) -> int:
        raise NotImplementedError

    def _set_schema_version(self, db, version: int) -> None:
        raise NotImplementedError

    def _contains(self, column: str) -> str:
        """A condition: ``column`` contains the next parameter as a substring."""
        raise NotImplementedError

    def _indexed_match(self, q: str) -> tuple[str, str]:
        """A condition on ``p`` (paragraphs) that its text contains ``q`` (3+ characters), through
        the full-text index, and its parameter."""
        raise NotImplementedError

    def _migrate(self, db) -> None:
        """Bring the schema up to date; the caller holds the write lock (one transaction), so two
        processes opening a new database never both create it."""
        version = self._schema_version(db)
        if version > len(MIGRATIONS):
            raise FazhiError("database", f"schema version {version} is newer than this fazhi ({len(MIGRATIONS)})")
        for n, scripts in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements(scripts[self.dialect]):
                db.execute(statement)
            self._set_schema_version(db, n)

    def close(self) -> None:
        """Nothing held between calls unless a subclass pools connections."""

    def add(self, record: ReportRecord) -> str:
        rows = [(record.id, p["id"], i, p["kind"], p["level"], json.dumps(p["heading_path"], ensure_ascii=False),
                 p["text"], p["category"], json.dumps(p["scores"]), int(p["shortcoming"]), p["shortcoming_score"])
                for i, p in enumerate(record.paragraphs)]
        with self._write() as db:
            db.execute("INSERT INTO reports VALUES (?,?,?,?,?,?,?,?,?)",
                       (record.id, record.title, record.region, record.year, record.source, record.model,
                        record.created_at, json.dumps(record.meta, ensure_ascii=False),
                        json.dumps(record.digest, ensure_ascii=False) if record.digest is not None else None))
            db.executemany("INSERT INTO paragraphs (report_id, paragraph_id, position, kind, level, heading_path, "
                           "text, category, scores, shortcoming, shortcoming_score) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           rows)
        return record.id

    @staticmethod
    def _report(row) -> dict:
        return {"id": row["id"], "title": row["title"], "region": row["region"], "year": row["year"],
                "source": row["source"], "model": row["model"], "created_at": row["created_at"]}

    def get(self, report_id: str) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM reports WHERE id = ?", (report_id,)).fetchone()
            if row is None:
                return None
            paras = db.execute("SELECT * FROM paragraphs WHERE report_id = ? ORDER BY position", (report_id,)).fetchall()
            fixes = self._latest(db, [(report_id, p["paragraph_id"]) for p in paras])
        return {**self._report(row), "meta": json.loads(row["meta"]),
                "digest": json.loads(row["digest"]) if row["digest"] else None,
                "paragraphs": [self._paragraph(p, fixes) for p in paras]}

    @staticmethod
    def _latest(db, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """For (report, paragraph) keys, the reviewers' current labels: ``{"category"?, "shortcoming"?,
        "by", "at"}`` of the latest correction of each field."""
        out: dict[tuple[str, str], dict] = {}
        for report_id in {r for r, _ in keys}:
            wanted = {p for r, p in keys if r == report_id}
            for c in db.execute("SELECT * FROM corrections WHERE report_id = ? ORDER BY rowid", (report_id,)):
                if c["paragraph_id"] in wanted:
                    fix = out.setdefault((report_id, c["paragraph_id"]), {})
                    fix[c["field"]] = _flag(c["new"]) if c["field"] == "shortcoming" else c["new"]
                    fix.update(by=c["reviewer"], at=c["created_at"])
        return out

    def correct(self, report_id: str, paragraph_id: str, labels: dict[str, Any], reviewer: str) -> dict | None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._write() as db:
            row = db.execute("SELECT * FROM paragraphs WHERE report_id = ? AND paragraph_id = ?",
                             (report_id, paragraph_id)).fetchone()
            if row is None:
                return None
            current = {**{"category": row["category"], "shortcoming": bool(row["shortcoming"])},
                       **self._latest(db, [(report_id, paragraph_id)]).get((report_id, paragraph_id), {})}
            for name in ("category", "shortcoming"):
                if name in labels and labels[name] != current[name]:
                    text = lambda v: str(v).lower() if name == "shortcoming" else str(v)  # noqa: E731
                    db.execute("INSERT INTO corrections (report_id, paragraph_id, field, old, new, reviewer, "
                               "created_at) VALUES (?,?,?,?,?,?,?)",
                               (report_id, paragraph_id, name, text(current[name]), text(labels[name]), reviewer, now))
            fixes = self._latest(db, [(report_id, paragraph_id)])
        return {"report_id": report_id, **self._paragraph(row, fixes)}

    def corrections(self, report_id: str | None = None) -> list[dict]:
        where, args = ("WHERE report_id = ?", (report_id,)) if report_id else ("", ())
        with self._read() as db:
            return [dict(r) for r in db.execute("SELECT report_id, paragraph_id, field, old, new, reviewer, created_at "
                                                f"FROM corrections {where} ORDER BY rowid", args)]

    def overview(self) -> list[dict]:
        with self._read() as db:
            rows = db.execute("SELECT r.id, r.title, r.region, r.year, p.category, count(*) AS n, "
                              "sum(p.shortcoming) AS shortcomings FROM reports r JOIN paragraphs p "
                              "ON p.report_id = r.id WHERE p.kind = 'body' GROUP BY r.id, r.title, r.region, r.year, "
                              "p.category ORDER BY r.region NULLS FIRST, r.year NULLS FIRST, r.id, p.category").fetchall()
        out: dict[str, dict] = {}
        for r in rows:
            item = out.setdefault(r["id"], {"id": r["id"], "title": r["title"], "region": r["region"],
                                            "year": r["year"], "paragraphs": {}, "shortcomings": {}})
            item["paragraphs"][r["category"]] = int(r["n"])
            item["shortcomings"][r["category"]] = int(r["shortcomings"])
        return list(out.values())

    def delete(self, report_id: str) -> bool:
        with self._write() as db:
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
            where.append(self._contains("coalesce(r.title, '')"))
            args.append(query.q)
        with self._read() as db:
            rows = db.execute("SELECT r.*, (SELECT count(*) FROM paragraphs p WHERE p.report_id = r.id) AS n "
                              f"FROM reports r WHERE {' AND '.join(where)} ORDER BY r.created_at || r.id LIMIT ?",
                              (*args, limit + 1)).fetchall()
        items = [{**self._report(r), "paragraphs": int(r["n"])} for r in rows[:limit]]
        more = len(rows) > limit
        return items, encode_cursor(rows[limit - 1]["created_at"] + rows[limit - 1]["id"]) if more else None

    @staticmethod
    def _paragraph(row, fixes: dict[tuple[str, str], dict] | None = None) -> dict:
        """A stored paragraph: the model's labels, and under ``correction`` the reviewers' (or None)."""
        return {"id": row["paragraph_id"], "kind": row["kind"], "level": row["level"],
                "heading_path": json.loads(row["heading_path"]), "text": row["text"], "category": row["category"],
                "scores": json.loads(row["scores"]), "shortcoming": bool(row["shortcoming"]),
                "shortcoming_score": row["shortcoming_score"],
                "correction": (fixes or {}).get((row["report_id"], row["paragraph_id"]))}

    def paragraphs(self, query: ParagraphQuery, limit: int, cursor: str | None = None) -> tuple[list[dict], str | None]:
        after = decode_cursor(cursor) if cursor else "0"
        # a row number: ASCII digits within 64-bit integers (isdigit alone admits "²" and 10**30)
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
            # both full-text indexes work on character trigrams; shorter queries scan
            clause, arg = self._indexed_match(query.q) if len(query.q) >= 3 else (self._contains("p.text"), query.q)
            where.append(clause)
            args.append(arg)
        sql = ("SELECT p.*, r.title, r.region, r.year FROM paragraphs p JOIN reports r ON r.id = p.report_id "
               f"WHERE {' AND '.join(where)} ORDER BY p.rowid LIMIT ?")
        with self._read() as db:
            rows = db.execute(sql, (*args, limit + 1)).fetchall()
            fixes = self._latest(db, [(r["report_id"], r["paragraph_id"]) for r in rows[:limit]])
        items = [{"report_id": r["report_id"], "title": r["title"], "region": r["region"], "year": r["year"],
                  **self._paragraph(r, fixes)} for r in rows[:limit]]
        return items, encode_cursor(rows[limit - 1]["rowid"]) if len(rows) > limit else None
