"""Rate limits: token buckets shared through a real Redis, and the in-process fallback."""

from __future__ import annotations

import uuid

import pytest

from services.ratelimit import LocalLimiter, RedisLimiter
from services.runtime import connect_redis


def test_a_burst_is_allowed_then_refused_with_the_time_to_wait():
    now = [100.0]
    limiter = LocalLimiter(clock=lambda: now[0])
    decisions = [limiter.take("key:a", per_minute=60, burst=3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after == pytest.approx(1.0)
    now[0] += 1.0  # one token a second comes back
    assert limiter.take("key:a", per_minute=60, burst=3).allowed
    assert limiter.take("key:b", per_minute=60, burst=3).allowed  # buckets are per caller


def test_instances_share_one_bucket_in_redis(redis_client):
    caller = f"key:{uuid.uuid4().hex}"
    first = RedisLimiter(redis_client, LocalLimiter())
    second = RedisLimiter(redis_client, LocalLimiter())  # another Cloud Run instance
    allowed = [
        limiter.take(caller, per_minute=6, burst=4).allowed
        for limiter in (first, second, first, second, first)
    ]
    assert allowed == [True, True, True, True, False]
    refused = second.take(caller, per_minute=6, burst=4)
    assert not refused.allowed and 0 < refused.retry_after <= 10


def test_a_redis_outage_falls_back_to_the_local_bucket(redis_server):
    if redis_server.process is None:
        redis_server.start()
    client = connect_redis(redis_server.url)
    limiter = RedisLimiter(client, LocalLimiter(), cooldown=60)
    redis_server.stop()
    try:
        decisions = [limiter.take("key:outage", per_minute=60, burst=2) for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]  # still limited
    finally:
        redis_server.start()
        client.close()
