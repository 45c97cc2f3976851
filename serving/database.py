"""Which store a database URL names."""

from __future__ import annotations

from pathlib import Path

from fazhi.errors import FazhiError
from fazhi.serving.postgres import PostgresStore
from fazhi.serving.sqlite import SQLiteStore
from fazhi.serving.store import ReportStore


def open_store(url: str | Path, busy_timeout: float = 5.0) -> ReportStore:
    """A store for ``url``, its schema created or migrated: a file path or ``sqlite:///path``
    (SQLite; ``:memory:`` is not shared, so not offered), or ``postgresql://user:password@host:port/db``;
    a write waits ``busy_timeout`` seconds for another writer's lock."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text, busy_timeout)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    elif "://" in text:
        raise FazhiError(text.split("://")[0] + "://…", "unsupported database URL; use a file path, sqlite:///path "
                         "or postgresql://user@host/db")
    return SQLiteStore(Path(text), busy_timeout)
