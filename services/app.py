"""The Flask application factory (Cloud Run entry point is ``main.app``)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify

from services.config import Settings
from services.errors import AppError
from services.runtime import Runtime, build_runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level)
    runtime = runtime or build_runtime(settings)
    app = Flask(__name__)
    app.extensions["runtime"] = runtime

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        checks = {"database": _check(lambda: runtime.pool_ping())}
        if runtime.redis is not None:
            checks["redis"] = _check(runtime.redis.ping)
        ready = all(value == "ok" for value in checks.values())
        return jsonify(status="ok" if ready else "unavailable", checks=checks), (
            200 if ready else 503
        )

    @app.errorhandler(AppError)
    def app_error(error: AppError):
        body = {"code": error.code, "message": error.message}
        if error.field:
            body["field"] = error.field
        return jsonify(error=body), error.status

    return app


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as error:  # a failed dependency is reported, not raised
        log.warning("readiness check failed: %s", error)
        return f"error: {type(error).__name__}"
