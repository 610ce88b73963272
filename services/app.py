"""The Flask application factory (Cloud Run entry point is ``main.app``).

Every request but the public ones (health, readiness, the OpenAPI document and its /docs
page, the chat page) is authenticated and rate-limited before its handler runs; every
error leaves as JSON ``{"error": {"code", "message", "field"?}}`` (OpenAI's shape on the
OpenAI-compatible routes); every response is counted and logged.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from services.api import chat, completions, docs, edge, me, memories, threads
from services.api.openapi import document
from services.auth import ACT_AS_HEADER, ApiKeyStore, Authenticator, make_id_token_verifier
from services.config import Settings
from services.errors import AppError, Forbidden, RateLimited, Unavailable
from services.ratelimit import Limiter, make_limiter
from services.runtime import Runtime, build_runtime
from services.telemetry import Metrics, configure_logging, user_hash

log = logging.getLogger("memory_agent.http")

PUBLIC_ENDPOINTS = {"healthz", "readyz", "openapi", "index", "static", *docs.PUBLIC}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def create_app(
    settings: Settings | None = None,
    runtime: Runtime | None = None,
    *,
    authenticator: Authenticator | None = None,
    limiter: Limiter | None = None,
) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(settings)
    runtime = runtime or build_runtime(settings)
    authenticator = authenticator or Authenticator(
        ApiKeyStore(runtime.pool),
        make_id_token_verifier(settings.firebase_project_id, settings.firebase_certs_url),
    )
    limiter = limiter or make_limiter(runtime.redis)
    metrics = Metrics()

    app = Flask(__name__, static_folder="web", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions.update(runtime=runtime, metrics=metrics, authenticator=authenticator)
    for blueprint in (chat.bp, completions.bp, docs.bp, memories.bp, threads.bp, me.bp):
        app.register_blueprint(blueprint)
    _guard_requests(app, settings, authenticator, limiter)
    _count_and_log(app, metrics)
    _service_routes(app, runtime, metrics)
    _json_errors(app, settings)
    return app


def _guard_requests(
    app: Flask, settings: Settings, authenticator: Authenticator, limiter: Limiter
) -> None:
    """Every request gets an id; all but the public ones are authenticated, rate-limited
    and have their JSON parsed before a handler runs."""

    @app.before_request
    def authenticate_and_limit() -> None:
        g.started = time.perf_counter()
        g.request_id = _request_id(request.headers.get("X-Request-Id", ""))
        request.environ["REQUEST_ID"] = g.request_id
        if request.endpoint in PUBLIC_ENDPOINTS:
            return
        principal = authenticator.authenticate(
            request.headers.get("Authorization"), request.headers.get(ACT_AS_HEADER)
        )
        g.principal = principal
        g.auth_ms = round((time.perf_counter() - g.started) * 1000, 2)
        per_minute = principal.rate_limit_per_minute or settings.rate_limit_per_minute
        # A key's own (lower) limit also caps its burst, or the burst would exceed it.
        decision = limiter.take(
            principal.subject, per_minute, min(settings.rate_limit_burst, per_minute)
        )
        if not decision.allowed:
            raise RateLimited(
                f"rate limit exceeded; retry in {decision.retry_after:.1f}s", decision.retry_after
            )
        # Before any handler, so bad JSON never reaches one and a stream never starts on it.
        edge.parse_request(request)


def _count_and_log(app: Flask, metrics: Metrics) -> None:
    """Every response is counted, carries the request id and is logged (never a body)."""

    @app.after_request
    def count_and_log(response: Response) -> Response:
        started = g.get("started")
        seconds = time.perf_counter() - started if started else 0.0
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe_request(route, request.method, response.status_code, seconds)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        principal = g.get("principal")
        log.info(
            "%s %s %s",
            request.method,
            route,
            response.status_code,
            extra={
                "json_fields": {
                    "request_id": g.get("request_id"),
                    "user": user_hash(principal.user_id) if principal else None,
                    "route": route,
                    "status": response.status_code,
                    "latency_ms": round(seconds * 1000, 2),
                }
            },
        )
        return response


def _service_routes(app: Flask, runtime: Runtime, metrics: Metrics) -> None:
    """Probes, metrics, the chat page and the OpenAPI document."""

    # /healthz is for the container probes; checks through the public URL use /health,
    # because Cloud Run's front end reserves some paths that end in "z".
    @app.get("/healthz")
    @app.get("/health")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        checks = {"database": _check(runtime.pool_ping)}
        if runtime.redis is not None:
            checks["redis"] = _check(runtime.redis.ping)
        ready = all(value == "ok" for value in checks.values())
        return jsonify(status="ok" if ready else "unavailable", checks=checks), (
            200 if ready else 503
        )

    @app.get("/metrics")
    def metrics_endpoint():
        if not g.principal.service:
            raise Forbidden("metrics are for service keys")
        return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")

    @app.get("/")
    def index():
        return app.send_static_file("index.html")

    @app.get("/openapi.json")
    def openapi():
        return document()


def _json_errors(app: Flask, settings: Settings) -> None:
    """Every error leaves as JSON naming the problem; never a stack trace or HTML."""

    @app.errorhandler(AppError)
    def app_error(error: AppError):
        response = _error(error.status, error.code, error.message, error.field)
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(max(1, round(error.retry_after + 0.5)))
        return response

    @app.errorhandler(Unavailable)  # a dependency is down (the database): retry later
    def unavailable(error: Unavailable):
        response = app_error(error)
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            message = f"request body is larger than {settings.max_body_bytes} bytes"
        response = _error(status, _HTTP_CODES.get(status, "http_error"), message)
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; the request id is in X-Request-Id")


_REQUEST_ID = re.compile(r"[!-~]{1,64}")


def _request_id(sent: str) -> str:
    """The client's request id if it is 1-64 visible ASCII characters, else a new one: it
    is echoed in a header and stored with each change, where controls and NUL cannot go."""
    return sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, str] = {"code": code, "message": message}
    if field:
        body["field"] = field
    response = jsonify(error=body)
    response.status_code = status
    return response


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as error:  # a failed dependency is reported, not raised
        log.warning("readiness check failed: %s", error)
        return f"error: {type(error).__name__}"
