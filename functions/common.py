"""What the handlers share: the lazily built process runtime, trigger auth, JSON replies."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import flask

from services.config import Settings
from services.oidc import AuthError, TriggerVerifier
from services.runtime import Runtime, build_runtime

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[], Runtime]
VerifierFactory = Callable[[Settings], TriggerVerifier]


class ProcessRuntime:
    """Builds the runtime on first call, once per process (thread-safe), then reuses it.

    A function instance serves many invocations; the pool, the embedder and the Cloud SQL
    connector must outlive each one. Nothing is built at import time, so a deploy's
    import check and a cold start that never gets a request stay cheap.
    """

    def __init__(self, build: RuntimeFactory) -> None:
        self._build = build
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> ProcessRuntime:
        # Functions never run the in-process worker: they are the worker.
        return cls(lambda: build_runtime(Settings.from_env(), start_worker=False))

    def __call__(self) -> Runtime:
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._runtime = self._build()
        return self._runtime


class LazyVerifier:
    """One verifier (and so one certificate cache) per handler, built on first request."""

    def __init__(self, runtime: RuntimeFactory, factory: VerifierFactory) -> None:
        self._runtime = runtime
        self._factory = factory
        self._verifier: TriggerVerifier | None = None
        self._lock = threading.Lock()

    def check(self, request: flask.Request) -> flask.Response | None:
        """None when the caller may proceed, else the 401/403 reply."""
        with self._lock:
            if self._verifier is None:
                self._verifier = self._factory(self._runtime().settings)
        try:
            caller = self._verifier.verify(request.headers.get("Authorization"), request.url)
        except AuthError as error:
            log.warning("rejected trigger call to %s: %s", request.path, error)
            return json_reply(
                {"error": {"code": "unauthorized", "message": str(error)}}, error.status
            )
        if caller is not None:
            log.info("trigger call by %s", caller.email)
        return None


def json_reply(body: dict[str, Any], status: int = 200) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    return response


def named(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """functions-framework registers a decorated function under its ``__name__``."""
    function.__name__ = name
    function.__qualname__ = name
    return function
