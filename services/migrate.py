"""Schema migrations: numbered SQL files in services/migrations, applied once each, in order.

Start-up and ``python -m services.migrate`` both call ``migrate``. A session-level advisory
lock serialises concurrent start-ups (several gunicorn workers, a Cloud Run scale-out, the
deploy's migration job), so none of them races another into a half-applied schema.

The vector column's dimension comes from the embedding model the database was created with
(recorded in ``app_meta``). Starting with another model is refused with instructions;
``--reembed`` switches the database to the configured model and leaves every row pending
for the embedding worker.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pg8000.dbapi

from services.config import Settings
from services.db import Pool, open_pool

# Named, not __name__: run as python -m services.migrate, the module is "__main__".
log = logging.getLogger("services.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LOCK_ID = 7_311_902_451  # any constant; names this application's migration lock
HNSW_INDEX = "memories_embedding_hnsw"


class EmbeddingModelMismatch(RuntimeError):
    """The database holds vectors of another model than the one configured."""


def migrate(pool: Pool, embedding_model: str, embedding_dim: int, hnsw_index: bool) -> list[str]:
    """Apply pending migrations; return the names applied. Safe to call concurrently."""
    with _migration_lock(pool) as conn:
        applied = _apply_pending(conn, embedding_model, embedding_dim)
        _check_embedding_model(conn, embedding_model, embedding_dim)
        _ensure_hnsw_index(conn, hnsw_index)
        return applied


@contextmanager
def _migration_lock(pool: Pool) -> Iterator[pg8000.dbapi.Connection]:
    """A dedicated connection holding the session-level migration lock."""
    conn = pool.connect(use_role=False)
    try:
        conn.autocommit = True
        _execute(conn, "SELECT pg_advisory_lock(%s)", [LOCK_ID])
        try:
            conn.autocommit = False
            yield conn
        finally:
            conn.rollback()
            conn.autocommit = True
            _execute(conn, "SELECT pg_advisory_unlock(%s)", [LOCK_ID])
    finally:
        conn.close()


def reembed(pool: Pool, embedding_model: str, embedding_dim: int) -> int:
    """Switch the database to another embedding model; every memory becomes pending."""
    with pool.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_ID])
        tx.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
        tx.execute(
            f"ALTER TABLE memories ALTER COLUMN embedding TYPE vector({int(embedding_dim)}) "
            "USING NULL"
        )
        tx.execute("UPDATE memories SET embedding_model = NULL")
        _set_meta(tx.conn, "embedding_model", embedding_model)
        _set_meta(tx.conn, "embedding_dim", str(embedding_dim))
        return int(tx.value("SELECT count(*) FROM memories"))


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))


def _apply_pending(
    conn: pg8000.dbapi.Connection,
    model: str,
    dim: int,
    progress: Callable[[int, int | None], None] | None = None,
) -> list[str]:
    _execute(
        conn,
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    done = {row[0] for row in _execute(conn, "SELECT name FROM schema_migrations")}
    conn.commit()
    applied: list[str] = []
    pending = [path for path in migration_files() if path.name not in done]
    for path in pending:
        sql = path.read_text().replace("{{EMBEDDING_DIM}}", str(int(dim)))
        try:
            _execute_script(conn, sql)
            if path.name.startswith("001_"):
                _set_meta(conn, "embedding_model", model)
                _set_meta(conn, "embedding_dim", str(dim))
            _execute(conn, "INSERT INTO schema_migrations (name) VALUES (%s)", [path.name])
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        log.debug("applied migration %s", path.name)
        applied.append(path.name)
        if progress is not None:
            progress(len(applied), len(pending))
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


def _check_embedding_model(conn: pg8000.dbapi.Connection, model: str, dim: int) -> None:
    rows = _execute(conn, "SELECT key, value FROM app_meta WHERE key LIKE 'embedding_%'")
    meta = dict(rows)
    if meta.get("embedding_model") == model and meta.get("embedding_dim") == str(dim):
        return
    raise EmbeddingModelMismatch(
        f"the database's memories were embedded with {meta.get('embedding_model')!r} "
        f"({meta.get('embedding_dim')} dims), but the configured embedding model is "
        f"{model!r} ({dim} dims). Either set EMBEDDING_MODEL back to "
        f"{meta.get('embedding_model')!r}, or re-embed everything with the new model: "
        "`python -m services.migrate --reembed` (clears the vectors; the embedding worker "
        "fills them in again, and search falls back to lexical matches meanwhile)."
    )


def _ensure_hnsw_index(conn: pg8000.dbapi.Connection, wanted: bool) -> None:
    # HNSW is paid for on every embedding write, so it is opt-in (HNSW_INDEX=true) and
    # serves only namespaces above HNSW_MIN_ROWS and cross-user search.
    if wanted:
        _execute(
            conn,
            f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON memories "
            "USING hnsw (embedding vector_cosine_ops)",
        )
    else:
        _execute(conn, f"DROP INDEX IF EXISTS {HNSW_INDEX}")
    conn.commit()


def _set_meta(conn: pg8000.dbapi.Connection, key: str, value: str) -> None:
    _execute(
        conn,
        "INSERT INTO app_meta (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        [key, value],
    )


def _execute(conn: pg8000.dbapi.Connection, sql: str, params: list | None = None) -> list:
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params or ())
        return cursor.fetchall() if cursor.description else []
    finally:
        cursor.close()


def _execute_script(conn: pg8000.dbapi.Connection, sql: str) -> None:
    # pg8000 runs one statement per execute; migrations are plain DDL without semicolons
    # inside literals or bodies, so splitting on ';' at line ends is enough. Statements
    # without parameters are sent as written, so '%' needs no escaping.
    statement: list[str] = []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        statement.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(statement).strip().rstrip(";")
            if text:
                _execute(conn, text)
            statement = []
    leftover = "\n".join(statement).strip()
    if leftover:
        _execute(conn, leftover)


DESCRIPTION = """\
Bring the database schema up to date: apply every schema change this version needs, once,
in order. The service does this itself at start-up; run it by hand before a deploy, or to
switch embedding models."""

EPILOG = """\
Examples:
  .venv/bin/python -m services.migrate
      apply what is pending (the embedded database under DATA_DIR, or DATABASE_URL)
  EMBEDDING_MODEL=... .venv/bin/python -m services.migrate --reembed
      switch to another embedding model; every memory is then embedded again (run
      python -m services.jobs embed to do it now, with a progress bar)

Prints one line when done. LOG_LEVEL=DEBUG shows each step."""


def main(argv: list[str] | None = None) -> int:
    from services.embeddings import embedding_spec
    from services.progress import reporter
    from services.telemetry import configure_logging

    parser = argparse.ArgumentParser(
        prog="python -m services.migrate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--reembed",
        action="store_true",
        help="switch the database to the configured embedding model; all memories are "
        "embedded again (search falls back to word matches meanwhile)",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings)
    model, dim = embedding_spec(settings)
    pool = open_pool(settings)
    try:
        with reporter("schema changes", unit="files") as progress, _migration_lock(pool) as conn:
            applied = _apply_pending(conn, model, dim, progress)
        if args.reembed:
            count = reembed(pool, model, dim)
            migrate(pool, model, dim, settings.hnsw_index)
            print(f"switched to {model} ({dim} dims); {count} memories wait to be embedded")
            print("embed them now with: .venv/bin/python -m services.jobs embed")
            return 0
        migrate(pool, model, dim, settings.hnsw_index)
    except EmbeddingModelMismatch as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        pool.close()
    done = f"{len(applied)} schema changes applied" if applied else "nothing was pending"
    print(f"database is up to date ({done})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
