"""Per-principal rate limits: a token bucket in Redis, or in-process without Redis.

Each principal (API key or ID-token subject) has a bucket of ``burst`` tokens refilled at
``per_minute / 60`` tokens a second; a request takes one token or is refused with the time
until the next token (the ``Retry-After`` of a 429). The Redis bucket is one Lua script
(core EVAL, which Memorystore supports), so every instance shares one limit. When Redis
fails the in-process bucket takes over: a cache outage must not take the API down.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until a token is available (0 when allowed)
    remaining: int


class Limiter(Protocol):
    def take(self, principal: str, per_minute: int, burst: int) -> Decision: ...


class LocalLimiter:
    """Token buckets in this process (one instance, or Redis unavailable)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def take(self, principal: str, per_minute: int, burst: int) -> Decision:
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.get(principal, (float(burst), now))
            tokens = min(float(burst), tokens + (now - stamp) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            if len(self._buckets) >= self._max_keys and principal not in self._buckets:
                self._buckets.clear()  # bounded memory; a reset only ever grants more
            self._buckets[principal] = (tokens, now)
        return _decision(allowed, tokens, rate)


_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(tokens)}
"""


class RedisLimiter:
    """One bucket per principal shared by every instance; falls back to ``fallback``."""

    def __init__(self, redis: Any, fallback: Limiter, cooldown: float = 5.0) -> None:
        self._redis = redis
        self._script = redis.register_script(_TOKEN_BUCKET)
        self._fallback = fallback
        self._cooldown = cooldown
        self._skip_until = 0.0

    def take(self, principal: str, per_minute: int, burst: int) -> Decision:
        if time.monotonic() < self._skip_until:
            return self._fallback.take(principal, per_minute, burst)
        rate = per_minute / 60.0
        try:
            allowed, tokens = self._script(keys=[_key(principal)], args=[rate, burst])
        except Exception as error:
            self._skip_until = time.monotonic() + self._cooldown
            log.warning("rate limiter: redis unavailable (%s); limiting in-process", error)
            return self._fallback.take(principal, per_minute, burst)
        return _decision(bool(int(allowed)), float(tokens), rate)


def make_limiter(redis: Any | None) -> Limiter:
    local = LocalLimiter()
    return RedisLimiter(redis, local) if redis is not None else local


def _decision(allowed: bool, tokens: float, rate: float) -> Decision:
    retry_after = 0.0 if allowed else (1.0 - tokens) / rate
    return Decision(allowed, retry_after, max(0, math.floor(tokens)))


def _key(principal: str) -> str:
    # Hashed: principals are ids of keys or token subjects, not for a cache to hold.
    return "ma:rate:" + hashlib.sha256(principal.encode()).hexdigest()[:32]
