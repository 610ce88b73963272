"""Cost accounting: one ``usage`` row per LLM or embedding call, and the cost report.

Owns the ``usage`` table. ``UsageRecorder.record`` prices each call with
the table in :mod:`services.llm.pricing` and writes the rows in one statement. ``build_report``
sums spend per day and model, per user and per model over a window, measures the per-turn
averages (a turn is one chat request id) and projects the monthly cost for N users;
``python -m services.usage report`` prints it.

Projection rule: ``monthly(N) = N x turns per user per month x cost per turn``, where cost
per turn is *all* spend in the window (chat, query embeddings and background document
embeddings) divided by the number of turns, and turns per user per month is measured as
``turns / distinct users / days in the window x 30`` unless given explicitly.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from services.db import Pool, Tx
from services.llm.pricing import cost_usd, is_paid
from services.llm.types import Done, Usage

Kind = Literal["chat", "embedding"]
DAYS_PER_MONTH = 30
PLANNING_USERS = (1_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class UsageRecord:
    """One provider call. ``cost_usd`` and ``price_known`` are filled by :func:`priced`."""

    user_id: str
    kind: Kind
    provider: str
    model: str
    usage: Usage
    latency_ms: float = 0.0
    request_id: str | None = None
    thread_id: str | None = None
    cost_usd: float = 0.0
    price_known: bool = True
    created_at: datetime | None = None  # None: now (set for backfills and imports)


def priced(record: UsageRecord) -> UsageRecord:
    cost = cost_usd(record.model, record.usage)
    return replace(record, cost_usd=cost.usd, price_known=cost.known)


def estimate_tokens(text: str) -> int:
    """A rough count (4 characters a token) where a provider reports none."""
    return len(text) // 4 + 1


class EmbeddingModel(Protocol):
    provider: str  # who is paid for the call: "openai", "local"
    model: str


def chat_usage(
    user_id: str,
    done: Done,
    latency_ms: float,
    *,
    request_id: str | None = None,
    thread_id: str | None = None,
) -> UsageRecord:
    """One model call's row, priced, from what the call itself reported (the provider and
    model that answered, and their token counts)."""
    record = UsageRecord(
        user_id=user_id,
        kind="chat",
        provider=done.provider,
        model=done.model,
        usage=done.usage,
        latency_ms=latency_ms,
        request_id=request_id,
        thread_id=thread_id,
    )
    return priced(record)


def embedding_usage(
    embedder: EmbeddingModel,
    texts_by_user: Sequence[tuple[str, str]],
    latency_ms: float,
    *,
    reported_tokens: int = 0,
    request_id: str | None = None,
    thread_id: str | None = None,
) -> list[UsageRecord]:
    """One row per user of a paid embedding call, its tokens (``reported_tokens``, else
    estimated) shared out by text length: a provider reports one count for a whole batch.
    A free model (the local one) gets no rows."""
    if not is_paid(embedder.model):
        return []
    tokens = reported_tokens or sum(estimate_tokens(text) for _, text in texts_by_user)
    chars: dict[str, int] = {}
    for user_id, text in texts_by_user:
        chars[user_id] = chars.get(user_id, 0) + len(text) + 1
    total = sum(chars.values())
    return [
        priced(
            UsageRecord(
                user_id=user_id,
                kind="embedding",
                provider=embedder.provider,
                model=embedder.model,
                usage=Usage(input_tokens=max(1, round(tokens * share / total))),
                latency_ms=latency_ms * share / total,
                request_id=request_id,
                thread_id=thread_id,
            )
        )
        for user_id, share in chars.items()
    ]


class UsageRecorder:
    """Writes usage rows; ``record_in`` joins a caller's transaction."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def record(self, records: Sequence[UsageRecord]) -> list[UsageRecord]:
        """Write the rows, one transaction per user (each scoped to its user)."""
        written: list[UsageRecord] = []
        for user_id in dict.fromkeys(r.user_id for r in records):
            with self.pool.transaction(user_id) as tx:
                written += self.record_in(tx, [r for r in records if r.user_id == user_id])
        return written

    def record_in(self, tx: Tx, records: Sequence[UsageRecord]) -> list[UsageRecord]:
        rows = [priced(r) for r in records]
        if not rows:
            return rows
        tx.execute(
            """
            INSERT INTO usage (user_id, request_id, thread_id, kind, provider, model,
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                price_known, latency_ms, created_at)
            SELECT r.user_id, r.request_id, r.thread_id, r.kind, r.provider, r.model, r.tin,
                r.tout, r.cread, r.cwrite, r.cost, r.known, r.latency, COALESCE(r.at, now())
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                %s::text[], %s::int[], %s::int[], %s::int[], %s::int[], %s::numeric[],
                %s::boolean[], %s::real[], %s::timestamptz[])
                AS r(user_id, request_id, thread_id, kind, provider, model, tin, tout, cread,
                     cwrite, cost, known, latency, at)
            """,
            [
                [r.user_id for r in rows],
                [r.request_id for r in rows],
                [r.thread_id for r in rows],
                [r.kind for r in rows],
                [r.provider for r in rows],
                [r.model for r in rows],
                [r.usage.input_tokens for r in rows],
                [r.usage.output_tokens for r in rows],
                [r.usage.cache_read_tokens for r in rows],
                [r.usage.cache_write_tokens for r in rows],
                [f"{r.cost_usd:.8f}" for r in rows],
                [r.price_known for r in rows],
                [float(r.latency_ms) for r in rows],
                [r.created_at for r in rows],
            ],
        )
        return rows

    def for_request(self, user_id: str, request_id: str) -> list[UsageRecord]:
        """The rows of one request (tests, the per-request cost in logs)."""
        with self.pool.transaction(user_id) as tx:
            rows = tx.execute(
                """
                SELECT user_id, kind, provider, model, input_tokens, output_tokens,
                    cache_read_tokens, cache_write_tokens, latency_ms, request_id, thread_id,
                    cost_usd, price_known, created_at
                FROM usage WHERE user_id = %s AND request_id = %s ORDER BY id
                """,
                [user_id, request_id],
            )
        return [
            UsageRecord(
                user_id=r[0],
                kind=r[1],
                provider=r[2],
                model=r[3],
                usage=Usage(r[4], r[5], r[6], r[7]),
                latency_ms=float(r[8]),
                request_id=r[9],
                thread_id=r[10],
                cost_usd=float(r[11]),
                price_known=r[12],
                created_at=r[13],
            )
            for r in rows
        ]


# ---- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendRow:
    key: tuple[str, ...]
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class TurnStats:
    turns: int
    users: int
    days: float
    total_usd: float
    cost_per_turn: float
    input_tokens_per_turn: float
    output_tokens_per_turn: float
    turns_per_user_month: float
    unpriced_calls: int


@dataclass(frozen=True)
class Projection:
    users: int
    turns_per_user_month: float
    cost_per_turn: float
    monthly_usd: float


@dataclass(frozen=True)
class CostReport:
    since: datetime
    until: datetime
    by_day_model: list[SpendRow]
    by_user: list[SpendRow]
    by_model: list[SpendRow]
    turns: TurnStats
    projections: list[Projection] = field(default_factory=list)


_SUMS = (
    "count(*), COALESCE(sum(input_tokens), 0), COALESCE(sum(output_tokens), 0), "
    "COALESCE(sum(cache_read_tokens), 0), COALESCE(sum(cache_write_tokens), 0), "
    "COALESCE(sum(cost_usd), 0)"
)


def _turn_stats(totals: Sequence[Any], *, days: float) -> TurnStats:
    """Per-turn figures from the totals row: turns, users, spend, tokens, unpriced calls."""
    turns, active_users, total, tokens_in, tokens_out, unpriced = totals
    turns, active_users, total = int(turns), int(active_users), float(total)
    return TurnStats(
        turns=turns,
        users=active_users,
        days=days,
        total_usd=total,
        cost_per_turn=total / turns if turns else 0.0,
        input_tokens_per_turn=int(tokens_in) / turns if turns else 0.0,
        output_tokens_per_turn=int(tokens_out) / turns if turns else 0.0,
        turns_per_user_month=(
            turns / active_users / days * DAYS_PER_MONTH if active_users else 0.0
        ),
        unpriced_calls=int(unpriced),
    )


def build_report(
    pool: Pool,
    *,
    since: datetime,
    until: datetime,
    users: Sequence[int] = PLANNING_USERS,
    turns_per_user_month: float | None = None,
    top_users: int = 20,
    user_id: str | None = None,
) -> CostReport:
    """Spend in ``[since, until)``, optionally for one user, with projections for ``users``.

    With ``user_id`` the transaction is scoped to that user too: on the user-scoped pool
    (a caller's own report) row-level security confines it to the user's rows, whatever
    the statements below say; across users (the command) it runs on an unscoped pool.
    """
    scope = "created_at >= %s AND created_at < %s"
    params: list[object] = [since, until]
    if user_id is not None:
        scope += " AND user_id = %s"
        params.append(user_id)
    with pool.transaction(user_id) as tx:
        by_day_model = tx.execute(
            f"SELECT to_char(date_trunc('day', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD'), "
            f"model, {_SUMS} FROM usage WHERE {scope} GROUP BY 1, 2 ORDER BY 1, 2",
            params,
        )
        by_user = tx.execute(
            f"SELECT user_id, {_SUMS} FROM usage WHERE {scope} "
            "GROUP BY 1 ORDER BY 7 DESC, 1 LIMIT %s",
            [*params, top_users],
        )
        by_model = tx.execute(
            f"SELECT kind, provider, model, {_SUMS} FROM usage WHERE {scope} "
            "GROUP BY 1, 2, 3 ORDER BY 9 DESC, 3",
            params,
        )
        totals = tx.one(
            f"""
            SELECT count(DISTINCT request_id) FILTER (WHERE kind = 'chat'),
                count(DISTINCT user_id) FILTER (WHERE kind = 'chat'),
                COALESCE(sum(cost_usd), 0),
                COALESCE(sum(input_tokens + cache_read_tokens + cache_write_tokens)
                    FILTER (WHERE kind = 'chat'), 0),
                COALESCE(sum(output_tokens) FILTER (WHERE kind = 'chat'), 0),
                count(*) FILTER (WHERE NOT price_known)
            FROM usage WHERE {scope}
            """,
            params,
        )
    stats = _turn_stats(totals, days=max((until - since).total_seconds() / 86400, 1e-9))
    per_month = stats.turns_per_user_month if turns_per_user_month is None else turns_per_user_month
    projections = [
        Projection(n, per_month, stats.cost_per_turn, n * per_month * stats.cost_per_turn)
        for n in users
    ]
    return CostReport(
        since=since,
        until=until,
        by_day_model=[_spend(row, 2) for row in by_day_model],
        by_user=[_spend(row, 1) for row in by_user],
        by_model=[_spend(row, 3) for row in by_model],
        turns=stats,
        projections=projections,
    )


def _spend(row: tuple, key_columns: int) -> SpendRow:
    key = tuple(str(v) for v in row[:key_columns])
    calls, tin, tout, cread, cwrite, usd = row[key_columns:]
    return SpendRow(key, int(calls), int(tin), int(tout), int(cread), int(cwrite), float(usd))


def format_report(report: CostReport) -> str:
    out: list[str] = [
        f"Usage from {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC",
        "",
    ]

    def table(title: str, headers: Sequence[str], rows: list[SpendRow]) -> None:
        out.append(title)
        head = [*headers, "calls", "in", "out", "cache rd", "cache wr", "USD"]
        body = [
            [
                *row.key,
                str(row.calls),
                str(row.input_tokens),
                str(row.output_tokens),
                str(row.cache_read_tokens),
                str(row.cache_write_tokens),
                f"{row.cost_usd:.4f}",
            ]
            for row in rows
        ]
        widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
        for line in [head, *body]:
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if not body:
            out.append("  (no usage)")
        out.append("")

    table("Spend per day and model", ["day", "model"], report.by_day_model)
    table("Spend per model", ["kind", "provider", "model"], report.by_model)
    table("Top users by spend", ["user"], report.by_user)
    t = report.turns
    out += [
        "Per-turn averages (a turn = one chat request)",
        f"  turns {t.turns}, users {t.users}, window {t.days:.1f} days, total ${t.total_usd:.4f}",
        f"  cost per turn ${t.cost_per_turn:.6f} (all spend / turns, embeddings included)",
        f"  tokens per turn: {t.input_tokens_per_turn:.0f} in, {t.output_tokens_per_turn:.0f} out",
        f"  measured turns per user per month: {t.turns_per_user_month:.1f}",
    ]
    if t.unpriced_calls:
        out.append(f"  WARNING: {t.unpriced_calls} calls used models missing from the price table")
    out += ["", "Projected monthly cost"]
    for p in report.projections:
        out.append(
            f"  {p.users:>10,} users x {p.turns_per_user_month:.1f} turns x "
            f"${p.cost_per_turn:.6f} = ${p.monthly_usd:,.2f} / month"
        )
    return "\n".join(out)


def report_json(report: CostReport) -> str:
    return json.dumps(asdict(report), default=str, indent=2)


USAGE_DESCRIPTION = """\
What the language and embedding models cost: spend per day and model, the users who spent
most, the average cost of a chat turn, and what a month would cost for a given number of
users (users x turns per user a month x cost per turn, with turns measured over the
window unless given)."""

USAGE_EPILOG = """\
Examples:
  .venv/bin/python -m services.usage report
  .venv/bin/python -m services.usage report --days 7 --users 1000,50000
  .venv/bin/python -m services.usage report --user alice --json"""


def main(
    argv: Sequence[str] | None = None,
    *,
    pool_factory: Callable[[], Pool] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.usage",
        description=USAGE_DESCRIPTION,
        epilog=USAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{report}")
    rep = sub.add_parser(
        "report",
        help="spend per user, day and model, and a monthly projection",
        description=USAGE_DESCRIPTION,
        epilog=USAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument(
        "--days", type=float, default=30.0, help="how many days back to count (default 30)"
    )
    rep.add_argument(
        "--users",
        default=",".join(str(n) for n in PLANNING_USERS),
        help="comma-separated user counts to project for (default 1000,100000,1000000)",
    )
    rep.add_argument(
        "--turns-per-user-month",
        type=float,
        default=None,
        help="project with this many chat turns per user a month (default: as measured)",
    )
    rep.add_argument("--user", default=None, help="only this user's usage")
    rep.add_argument("--top", type=int, default=20, help="how many users to list")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        users = [int(n.replace("_", "")) for n in args.users.split(",") if n.strip()]
    except ValueError:
        parser.error("--users must be comma-separated integers")
    if pool_factory is None:
        from services.config import Settings
        from services.db import open_pool

        settings = Settings.from_env()
        pool = open_pool(settings)
    else:
        pool = pool_factory()
    until = now()
    try:
        report = build_report(
            pool,
            since=until - timedelta(days=args.days),
            until=until,
            users=users,
            turns_per_user_month=args.turns_per_user_month,
            top_users=args.top,
            user_id=args.user,
        )
    finally:
        if pool_factory is None:
            pool.close()
    print(report_json(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
