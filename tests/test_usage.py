"""Usage rows and the cost report, on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.llm import Usage
from services.usage import UsageRecord, UsageRecorder, build_report, format_report, main
from tests.processes import unique_user

DAY1 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


@pytest.fixture(scope="module")
def recorded(pool):
    """Two users over two days: 3 turns, chat on Sonnet and Haiku, one embedding call."""
    alice, bob = unique_user("alice"), unique_user("bob")
    sonnet, haiku = "claude-sonnet-4-5-20250929", "claude-haiku-4-5"

    def chat(user, request_id, model, usage, at):
        return UsageRecord(
            user, "chat", "anthropic", model, usage, 100.0, request_id, "t1", 0, True, at
        )

    rows = [
        # alice, turn 1 (two model calls, one with cache reads), day 1
        chat(alice, "r1", sonnet, Usage(1000, 100, 2000, 0), DAY1),
        chat(alice, "r1", sonnet, Usage(1100, 50), DAY1),
        # alice, turn 2, day 2, on the cheap model
        chat(alice, "r2", haiku, Usage(500, 20), DAY2),
        # bob, turn 3, day 2, plus a query embedding
        chat(bob, "r3", sonnet, Usage(800, 80), DAY2),
        UsageRecord(
            bob,
            "embedding",
            "openai",
            "text-embedding-3-small",
            Usage(10),
            20.0,
            "r3",
            created_at=DAY2,
        ),
        # an unknown model: recorded at 0 and flagged
        chat(bob, "r3", "some-new-model", Usage(10, 10), DAY2),
    ]
    written = UsageRecorder(pool).record(rows)
    return alice, bob, written


def test_rows_are_priced_from_the_table(recorded):
    _, _, written = recorded
    first = written[0]
    assert first.cost_usd == pytest.approx((1000 * 3 + 100 * 15 + 2000 * 0.3) / 1e6)
    assert written[2].cost_usd == pytest.approx((500 * 1 + 20 * 5) / 1e6)  # haiku
    assert written[4].cost_usd == pytest.approx(10 * 0.02 / 1e6)
    assert written[5].cost_usd == 0 and not written[5].price_known


def test_report_sums_per_day_model_user_and_projects(pool, recorded):
    alice, bob, written = recorded
    report = build_report(
        pool,
        since=DAY1 - timedelta(hours=10),
        until=DAY1 + timedelta(days=1, hours=14),
        users=[1000, 1_000_000],
    )
    total = sum(r.cost_usd for r in written)
    by_day = {row.key: row for row in report.by_day_model}
    assert by_day[("2026-11-20", "claude-sonnet-4-5-20250929")].calls == 2
    assert by_day[("2026-11-20", "claude-sonnet-4-5-20250929")].cache_read_tokens == 2000
    assert by_day[("2026-11-21", "claude-haiku-4-5")].input_tokens == 500
    assert [row.key[0] for row in report.by_user] == [alice, bob]
    assert sum(row.cost_usd for row in report.by_user) == pytest.approx(total)
    models = {row.key[2]: row for row in report.by_model}
    assert models["text-embedding-3-small"].key[0] == "embedding"

    t = report.turns
    assert (t.turns, t.users, t.unpriced_calls) == (3, 2, 1)
    assert t.days == pytest.approx(2.0)
    assert t.cost_per_turn == pytest.approx(total / 3)
    assert t.turns_per_user_month == pytest.approx(3 / 2 / 2 * 30)
    small, large = report.projections
    assert small.monthly_usd == pytest.approx(1000 * 22.5 * total / 3)
    assert large.monthly_usd == pytest.approx(1000 * small.monthly_usd)

    text = format_report(report)
    assert "Projected monthly cost" in text and "1,000,000 users" in text
    assert "missing from the price table" in text


def test_report_for_one_user_and_explicit_turn_rate(pool, recorded):
    alice, _, written = recorded
    report = build_report(
        pool,
        since=DAY1 - timedelta(days=1),
        until=DAY2 + timedelta(days=1),
        user_id=alice,
        users=[100_000],
        turns_per_user_month=60,
    )
    alice_total = sum(r.cost_usd for r in written if r.user_id == alice)
    assert report.turns.turns == 2 and report.turns.total_usd == pytest.approx(alice_total)
    (projection,) = report.projections
    assert projection.monthly_usd == pytest.approx(100_000 * 60 * alice_total / 2)


def test_report_command_prints_the_report(pool, recorded, capsys):
    code = main(
        ["report", "--days", "10", "--users", "1000,100000"],
        pool_factory=lambda: pool,
        now=lambda: DAY2 + timedelta(days=1),
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Spend per day and model" in out and "100,000 users" in out
    main(["report", "--json"], pool_factory=lambda: pool, now=lambda: DAY2)
    assert '"projections"' in capsys.readouterr().out


def test_embedding_rows_name_the_embedders_provider_and_share_the_batch_by_length():
    from types import SimpleNamespace

    from services.usage import embedding_usage

    paid = SimpleNamespace(provider="azure-openai", model="text-embedding-3-small")
    rows = embedding_usage(paid, [("a", "x" * 300), ("b", "y" * 99)], 40.0, reported_tokens=100)
    assert [(r.user_id, r.provider, r.kind) for r in rows] == [
        ("a", "azure-openai", "embedding"),
        ("b", "azure-openai", "embedding"),
    ]
    assert [r.usage.input_tokens for r in rows] == [75, 25]
    assert sum(r.latency_ms for r in rows) == pytest.approx(40.0)
    assert all(r.cost_usd > 0 and r.price_known for r in rows)
    free = SimpleNamespace(provider="local", model="multilingual-e5-small")
    assert embedding_usage(free, [("a", "text")], 5.0) == []
