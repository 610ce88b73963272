"""services.pgwire against the pinned pg8000 and a real PostgreSQL: these fail when a pg8000
upgrade moves an internal the adapter relies on, or when a read stops being one round trip."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pg8000.core
import pytest

from services import pgwire
from services.db import is_connection_lost, parse_database_url

ROOT = Path(__file__).resolve().parent.parent


class CountingSocket:
    """The connection's socket file, counting flushes: each flush followed by reading the
    replies is one round trip."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.flushes = 0

    def write(self, data):
        return self.inner.write(data)

    def read(self, size=-1):
        return self.inner.read(size)

    def flush(self):
        self.flushes += 1
        return self.inner.flush()

    def close(self):
        return self.inner.close()


@pytest.fixture
def conn(pool):
    conn = pool.connect()
    yield conn
    conn.close()


@pytest.fixture
def counted(conn):
    real = conn._sock
    counter = CountingSocket(real)
    conn._sock = counter
    yield conn, counter
    conn._sock = real


def test_pg8000_is_pinned_to_the_version_the_adapter_was_written_against():
    pins = re.findall(r"^pg8000==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pins == [pgwire.PG8000_VERSION]
    assert version("pg8000") == pgwire.PG8000_VERSION


def test_the_pg8000_internals_the_adapter_uses_are_there():
    for name in ("SYNC_MSG", "NULL_BYTE", "_flush", "_write", "_create_message", "Context"):
        assert hasattr(pg8000.core, name), name
    assert pg8000.core.SYNC_MSG == b"S\x00\x00\x00\x04"
    assert pg8000.core._create_message(b"B", b"xy") == b"B\x00\x00\x00\x06xy"
    assert list(inspect.signature(pg8000.core.Context).parameters) == [
        "statement",
        "stream",
        "columns",
        "input_funcs",
    ]
    context = pg8000.core.Context(None, columns=[], input_funcs=[])
    assert (context.rows, context.error) == ([], None)
    methods = {
        "send_QUERY": ["sql"],
        "send_BIND": ["statement_name_bin", "params"],
        "send_EXECUTE": [],
        "handle_messages": ["context"],
        "execute_simple": ["statement"],
        "prepare_statement": ["statement", "oids"],
        "close_prepared_statement": ["statement_name_bin"],
        "register_in_adapter": ["oid", "in_func"],
    }
    for name, params in methods.items():
        signature = inspect.signature(getattr(pgwire.Connection, name))
        assert list(signature.parameters)[1:] == params, name


def test_the_connection_state_the_adapter_reads_is_there(conn, database_url):
    assert conn._sock is not None and conn._client_encoding
    assert isinstance(conn.py_types, dict)
    untuned = pgwire.connect(**parse_database_url(database_url))
    assert untuned.message_types[b"D"] == untuned.handle_DATA_ROW  # what tune() replaces
    untuned.close()
    assert pgwire.in_transaction(conn) is False
    pgwire.execute_simple(conn, "BEGIN")
    assert pgwire.in_transaction(conn) is True
    pgwire.execute_simple(conn, "ROLLBACK")
    assert pgwire.in_transaction(conn) is False
    assert not pgwire.is_broken(conn)
    pgwire.mark_broken(conn)
    assert pgwire.is_broken(conn)


def test_a_read_alone_is_one_round_trip_and_returns_its_rows(counted):
    conn, counter = counted
    prepared = pgwire.prepare(conn, "SELECT g, g * %s FROM generate_series(1, %s) g", [0, 0])
    counter.flushes = 0
    rows = pgwire.read_alone(conn, "BEGIN READ ONLY", prepared, [10, 3], is_connection_lost)
    assert rows == [(1, 10), (2, 20), (3, 30)]
    assert counter.flushes == 1
    assert pgwire.in_transaction(conn) is False  # the COMMIT ran
    counter.flushes = 0
    assert pgwire.execute_prepared(conn, prepared, [1, 2]) == [(1, 1), (2, 2)]
    assert counter.flushes == 1


def test_a_failed_statement_in_a_read_alone_reads_every_reply(conn):
    prepared = pgwire.prepare(conn, "SELECT 1 / %s", [0])
    with pytest.raises(pgwire.DatabaseError) as caught:
        pgwire.read_alone(conn, "BEGIN READ ONLY", prepared, [0], is_connection_lost)
    assert caught.value.args[0]["C"] == "22012"
    assert pgwire.execute_simple(conn, "SELECT 'next'") == [("next",)]  # nothing left unread


def test_a_statement_carrying_its_begin_is_one_round_trip_inside_the_transaction(counted):
    conn, counter = counted
    prepared = pgwire.prepare(conn, "SELECT current_setting('app.user_id', true), %s::int", [0])
    counter.flushes = 0
    begin = "BEGIN; SELECT set_config('app.user_id', 'u1', true)"
    assert pgwire.execute_prepared(conn, prepared, [7], begin) == [("u1", 7)]
    assert counter.flushes == 1
    assert pgwire.in_transaction(conn) is True  # the caller commits
    pgwire.execute_simple(conn, "ROLLBACK")


def test_a_failed_begin_stops_the_statement_written_after_it(conn):
    pgwire.execute_simple(conn, "CREATE TEMP TABLE carried (n int)")
    prepared = pgwire.prepare(conn, "INSERT INTO carried VALUES (%s) RETURNING n", [0])
    with pytest.raises(pgwire.DatabaseError) as caught:
        pgwire.execute_prepared(conn, prepared, [1], "BEGIN; SELECT 1 / 0", is_connection_lost)
    assert caught.value.args[0]["C"] == "22012"  # the BEGIN's error, not the insert's
    pgwire.execute_simple(conn, "ROLLBACK")
    assert pgwire.execute_simple(conn, "SELECT count(*) FROM carried") == [(0,)]


def test_a_binary_vector_arrives_exactly_and_mixes_with_text_and_null(conn):
    pgwire.execute_simple(conn, "CREATE EXTENSION IF NOT EXISTS vector")
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 384)).astype(np.float32)
    prepared = pgwire.prepare(
        conn,
        "SELECT (%s::vector)::real[], %s::vector <=> %s::vector, %s::text, %s::int IS NULL",
        [0] * 5,
    )
    params = [pgwire.vector_binary(a), pgwire.vector_binary(a), pgwire.vector_binary(b)]
    rows = pgwire.execute_prepared(conn, prepared, [*params, "text '%s", None])
    values, distance, text, null = rows[0]
    assert np.array_equal(np.array(values, dtype=np.float32), a)  # bit for bit, no rounding
    expected = 1 - float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b))
    assert distance == pytest.approx(expected, abs=1e-6)
    assert (text, null) == ("text '%s", True)


def test_a_binary_vector_of_the_wrong_size_is_refused_by_the_server(conn):
    pgwire.execute_simple(conn, "CREATE EXTENSION IF NOT EXISTS vector")
    prepared = pgwire.prepare(conn, "SELECT %s::vector(384)", [0])
    with pytest.raises(pgwire.DatabaseError) as caught:
        pgwire.execute_prepared(conn, prepared, [pgwire.vector_binary(np.ones(3))])
    assert caught.value.args[0]["C"] == "22000"  # data_exception: expected 384 dimensions
    pgwire.execute_simple(conn, "ROLLBACK")


def test_timestamps_are_parsed_by_the_fast_parser_with_pg8000s_as_fallback(conn):
    pgwire.tune(conn)
    rows = pgwire.execute_simple(
        conn,
        "SELECT '2026-11-25 20:10:55.1+00'::timestamptz, 'infinity'::timestamp, "
        "'2026-01-02 03:04:05'::timestamp",
    )
    stamp, infinite, naive = rows[0]
    assert stamp.isoformat() == "2026-11-25 20:10:55.100000+00:00".replace(" ", "T")
    assert infinite == "infinity"  # pg8000's parser: what datetime cannot hold stays text
    assert naive.isoformat() == "2026-01-02T03:04:05"


def test_tuned_rows_decode_exactly_as_pg8000_decodes_them(pool):
    sql = (
        "SELECT g, 'é' || g || repeat('x', g), NULL::text, g %% 2 = 0, g * 0.5::real, "
        "(g * 1.25)::numeric, jsonb_build_object('k', g), "
        "'2026-11-25 20:10:55.123+00'::timestamptz + g * interval '1 s', "
        "'infinity'::timestamptz, gen_random_uuid() IS NOT NULL, ''::text "
        "FROM generate_series(%s::int, %s::int) AS g"
    )
    plain, tuned = pool.connect(), pool.connect()
    try:
        pgwire.tune(tuned)
        pgwire.tune(plain)
        plain.message_types[b"D"] = plain.handle_DATA_ROW  # pg8000's own row decoder
        for lo, hi in ((0, 5), (1000, 1003)):
            expected = pgwire.execute_prepared(plain, pgwire.prepare(plain, sql, [0, 0]), [lo, hi])
            got = pgwire.execute_prepared(tuned, pgwire.prepare(tuned, sql, [0, 0]), [lo, hi])
            assert got == expected and len(got) == hi - lo + 1
        assert pgwire.execute_simple(tuned, "SELECT 1, NULL, 'a'") == [(1, None, "a")]
    finally:
        plain.close()
        tuned.close()
