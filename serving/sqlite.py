"""The default store: one SQLite file in WAL mode, full-text search through an FTS5 trigram index."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fazhi.errors import FazhiError
from fazhi.serving.store import MIGRATION_TIMEOUT_S, SQLStore, StoreBusy


class SQLiteStore(SQLStore):
    """SQLite in WAL mode: readers never wait for the writer; one transaction per report."""

    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout: float = 5.0):
        self.path = path
        self.busy_timeout = busy_timeout
        deadline = time.monotonic() + MIGRATION_TIMEOUT_S
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with self._transaction(timeout=MIGRATION_TIMEOUT_S) as db:
                    self._migrate(db)
                with self._connect() as db:
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

    @contextmanager
    def _transaction(self, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its start (BEGIN IMMEDIATE)."""
        with self._connect(timeout) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _read(self):
        return self._connect()

    def _write(self):
        return self._transaction()

    def _schema_version(self, db: sqlite3.Connection) -> int:
        return db.execute("PRAGMA user_version").fetchone()[0]

    def _set_schema_version(self, db: sqlite3.Connection, version: int) -> None:
        db.execute(f"PRAGMA user_version={int(version)}")

    def _contains(self, column: str) -> str:
        return f"instr({column}, ?) > 0"

    def _indexed_match(self, q: str) -> tuple[str, str]:
        return ("p.rowid IN (SELECT rowid FROM paragraphs_fts WHERE paragraphs_fts MATCH ?)",
                '"' + q.replace('"', '""') + '"')

    def writable(self) -> bool:
        try:
            with self._connect(timeout=0.5) as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
            return True
        except (sqlite3.Error, StoreBusy):
            return False
