"""The store on a PostgreSQL server: pooled connections (psycopg_pool), full-text search through a
``pg_trgm`` trigram index, the schema migrated at start under an advisory lock.

Needs the ``postgres`` extra (``pip install 'fazhi[postgres]'``). The database user must be
allowed to create tables and the ``pg_trgm`` extension (a trusted extension: the database's
owner may) in the database it connects to.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from fazhi.errors import FazhiError
from fazhi.serving.store import MIGRATION_TIMEOUT_S, SQLStore, StoreBusy

POOL_SIZE = 10  # connections per server process: the analysis threads (4) and the store reads beside them
_MIGRATION_LOCK = 0x66617A6869  # advisory lock key ("fazhi"): one process migrates, the others wait for it


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class _Connection:
    """A psycopg connection that takes the store's ``?`` parameters (psycopg's are ``%s``)."""

    def __init__(self, conn):
        self.conn = conn

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, args: Sequence[Any] = ()):
        return self.conn.execute(self._sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self._sql(sql), rows)


class PostgresStore(SQLStore):
    """A PostgreSQL database named by ``url`` (``postgresql://user:password@host:port/dbname``)."""

    dialect = "postgresql"

    def __init__(self, url: str, busy_timeout: float = 5.0, pool_size: int = POOL_SIZE):
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError:
            raise FazhiError(redact(url), "PostgreSQL needs psycopg: pip install 'fazhi[postgres]'") from None
        self.url = url
        self.busy_timeout = busy_timeout
        self._errors, self._pool_timeout = psycopg, PoolTimeout
        # a write waits busy_timeout for another writer's row locks, then fails (StoreBusy, 503)
        options = {"autocommit": True, "row_factory": dict_row,
                   "options": f"-c lock_timeout={int(busy_timeout * 1000)}"}
        try:
            with psycopg.connect(url, connect_timeout=10, **options) as conn:
                conn.execute(f"SET lock_timeout = {int(MIGRATION_TIMEOUT_S * 1000)}")
                with conn.transaction():
                    db = _Connection(conn)
                    db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                    self._migrate(db)
        except psycopg.Error as err:
            raise FazhiError(redact(url), f"cannot open the database: {str(err).strip().splitlines()[0]}") from None
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs=options, timeout=busy_timeout,
                                   open=True, name="fazhi")

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def _connection(self, write: bool) -> Iterator[_Connection]:
        try:
            with self.pool.connection() as conn:
                if not write:
                    yield _Connection(conn)
                    return
                with conn.transaction():
                    yield _Connection(conn)
        except self._errors.errors.LockNotAvailable:
            raise StoreBusy("the database is locked by another writer; retry shortly") from None
        except self._pool_timeout:
            raise StoreBusy(f"no free database connection within {self.busy_timeout:g} s; retry shortly") from None
        except self._errors.OperationalError as err:
            raise StoreBusy(f"database unavailable: {str(err).strip().splitlines()[0]}") from None

    def _read(self):
        return self._connection(write=False)

    def _write(self):
        return self._connection(write=True)

    def _schema_version(self, db: _Connection) -> int:
        db.execute("CREATE TABLE IF NOT EXISTS fazhi_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) AS v FROM fazhi_schema").fetchone()
        return row["v"] or 0

    def _set_schema_version(self, db: _Connection, version: int) -> None:
        db.execute("DELETE FROM fazhi_schema")
        db.execute("INSERT INTO fazhi_schema VALUES (?)", (version,))

    def _contains(self, column: str) -> str:
        return f"strpos({column}, ?) > 0"

    def _indexed_match(self, q: str) -> tuple[str, str]:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return "p.text LIKE ? ESCAPE '\\'", f"%{escaped}%"

    def writable(self) -> bool:
        try:
            with self._read() as db:
                row = db.execute("SELECT pg_is_in_recovery() AS standby, "
                                 "current_setting('transaction_read_only') AS ro").fetchone()
            return not row["standby"] and row["ro"] == "off"
        except (StoreBusy, self._errors.Error):
            return False
