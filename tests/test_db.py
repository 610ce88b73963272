"""The pool's one-round-trip read (``Pool.read``): BEGIN, the statement and COMMIT are
written together, so every reply must be read back, whatever fails, or the connection's
next user would read someone else's results."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pg8000.exceptions import DatabaseError

from services.db import Pool, open_pool


@pytest.fixture
def single(settings, pool) -> Pool:  # one connection: every call reuses the same one
    one = open_pool(replace(settings, db_pool_size=1))
    yield one
    one.close()


def backend_pid(single: Pool) -> int:
    return single.read("SELECT pg_backend_pid() + %s", [0])[0][0]


def test_read_returns_the_rows_the_statement_selects(single):
    rows = single.read("SELECT g, g * %s FROM generate_series(1, 3) AS g ORDER BY g", [10])
    assert rows == [(1, 10), (2, 20), (3, 30)]


def test_each_read_is_its_own_read_only_transaction(single):
    rows = single.read("SELECT current_setting('transaction_read_only') || %s", [""])
    assert rows == [("on",)]
    first, second = (single.read("SELECT now() + %s", ["0s"])[0][0] for _ in range(2))
    assert first < second  # now() is the transaction's start: two transactions
    with single.transaction() as tx:  # ended, not left open: the next one may write
        tx.execute("CREATE TEMP TABLE t_after_read (x int)")


def test_a_failing_statement_raises_and_leaves_the_connection_usable(single):
    pid = backend_pid(single)
    with pytest.raises(DatabaseError) as caught:
        single.read("SELECT 1 / %s", [0])
    assert caught.value.args[0]["C"] == "22012"  # division_by_zero
    assert single.read("SELECT %s::int + 1", [41]) == [(42,)]
    assert backend_pid(single) == pid  # the same connection, not a replacement


def test_a_write_is_refused_inside_a_read(single):
    with pytest.raises(DatabaseError) as caught:
        single.read("CREATE TEMP TABLE t_read_only AS SELECT %s::int AS x", [1])
    assert caught.value.args[0]["C"] == "25006"  # read_only_sql_transaction
    assert single.read("SELECT %s::int", [7]) == [(7,)]


def test_a_dead_connection_is_replaced_and_the_read_retried(single, pool):
    pid = backend_pid(single)
    with pool.transaction() as tx:
        assert tx.value("SELECT pg_terminate_backend(%s)", [pid]) is True
    assert single.read("SELECT %s::text", ["still here"]) == [("still here",)]
    assert backend_pid(single) != pid


def interrupt_after_the_first_reply(single) -> None:
    """Ctrl-C on the pool's only connection after BEGIN's reply, before the statement's."""
    with single.connection() as conn:
        real = conn.handle_messages

        def interrupted(context):
            conn.handle_messages = real
            real(context)
            raise KeyboardInterrupt

        conn.handle_messages = interrupted


def test_a_read_interrupted_mid_reply_never_hands_its_connection_out_again(single):
    pid = backend_pid(single)
    interrupt_after_the_first_reply(single)
    with pytest.raises(KeyboardInterrupt):
        single.read("SELECT %s::int", [1])
    assert single.read("SELECT %s::int", [2]) == [(2,)]  # not the statement's stale reply
    assert backend_pid(single) != pid


def test_a_transactions_first_statement_carries_its_begin_and_user(single):
    sql = "SELECT current_setting('app.user_id', true), pg_current_xact_id()::text || %s"
    with single.transaction("user-a") as tx:
        first, second = tx.one(sql, [""]), tx.one(sql, [""])
    assert first[0] == "user-a"
    assert first == second  # one transaction, its id the same for both statements
    with single.transaction() as tx:  # the setting was the transaction's own
        assert tx.one(sql, [""])[0] in ("", None)


def test_a_failing_first_statement_rolls_back_and_leaves_the_connection_usable(single):
    pid = backend_pid(single)
    with pytest.raises(DatabaseError) as caught, single.transaction("user-a") as tx:
        tx.execute("SELECT 1 / %s", [0])
    assert caught.value.args[0]["C"] == "22012"
    with single.transaction() as tx:
        assert tx.value("SELECT %s::int + 1", [1]) == 2
    assert backend_pid(single) == pid


def test_a_transaction_interrupted_mid_reply_never_hands_its_connection_out_again(single):
    pid = backend_pid(single)
    interrupt_after_the_first_reply(single)
    with pytest.raises(KeyboardInterrupt), single.transaction("user-a") as tx:
        tx.execute("SELECT %s::int", [1])
    with single.transaction() as tx:
        assert tx.value("SELECT %s::int", [2]) == 2  # not the statement's stale reply
    assert backend_pid(single) != pid
