"""A retention run cut short by its time budget resumes where it stopped; overlapping runs
never process a memory twice. Own database, so the users here are the only ones."""

from __future__ import annotations

import threading

from services.archive import LocalArchive
from services.retention import RetentionJob, RetentionPolicy, run_retention, set_policy
from services.threads import ThreadStore
from tests.processes import unique_user

POLICY = RetentionPolicy(
    max_age_days=0, max_count=2, importance_floor=1.01, archive_after_days=0, thread_idle_days=0
)


class StepClock:
    """Advances one second per reading: the budget becomes a number of clock readings."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.now += 1.0
            return self.now


def seed(store, users: int, per_user: int) -> list[str]:
    names = sorted(unique_user("resume") for _ in range(users))
    for name in names:
        for i in range(per_user):
            store.upsert(name, f"note {i} of {name}", importance=0.1 * (i + 1))
    return names


def per_user_counts(pool, users) -> dict[str, int]:
    with pool.transaction() as tx:
        rows = tx.execute(
            "SELECT user_id, count(*) FROM memories WHERE user_id = ANY(%s) GROUP BY user_id",
            [users],
        )
    return dict(rows)


def trim_events(pool, users) -> int:
    with pool.transaction() as tx:
        return int(
            tx.value(
                "SELECT count(*) FROM memory_events WHERE user_id = ANY(%s) "
                "AND actor = 'retention:max_count'",
                [users],
            )
        )


def test_a_run_cut_by_its_budget_resumes_where_it_stopped(store, pool, embedder, tmp_path):
    users = seed(store, users=5, per_user=4)
    clock = StepClock()
    job = RetentionJob(
        pool, LocalArchive(tmp_path), ThreadStore(pool), POLICY, embedder.model, 1, clock
    )
    first = run_retention(job, budget_seconds=4)  # start, requests, then two chunks
    assert not first.complete and first.chunks == 2
    counts = per_user_counts(pool, users)
    assert [counts[u] for u in users] == [2, 2, 4, 4, 4]
    with pool.transaction() as tx:
        assert tx.value("SELECT cursor FROM retention_state WHERE job = 'retention'") == users[1]

    second = run_retention(job, budget_seconds=100)
    assert second.complete and second.users == 3
    assert per_user_counts(pool, users) == {u: 2 for u in users}
    assert trim_events(pool, users) == 10  # each trimmed memory once, none twice
    with pool.transaction() as tx:
        assert tx.value("SELECT cursor FROM retention_state WHERE job = 'retention'") == ""
        finished = tx.execute("SELECT complete FROM retention_runs ORDER BY id DESC LIMIT 2")
    assert [row[0] for row in finished] == [True, False]


def test_overlapping_runs_take_turns(store, pool, embedder, tmp_path):
    users = seed(store, users=6, per_user=3)
    set_policy(pool, POLICY, users[0], {"max_count": 1})
    job = RetentionJob(pool, LocalArchive(tmp_path), ThreadStore(pool), POLICY, embedder.model, 1)
    reports = []
    runners = [
        threading.Thread(target=lambda: reports.append(run_retention(job, budget_seconds=60)))
        for _ in range(3)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    counts = per_user_counts(pool, users)
    assert counts[users[0]] == 1 and all(counts[u] == 2 for u in users[1:])
    assert trim_events(pool, users) == 2 + 5
