"""gunicorn settings for Cloud Run and local runs: gunicorn --config gunicorn.conf.py main:app."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Requests one process serves at once (every open stream holds one): size to Cloud Run's
# concurrency. Greenlets under gevent, threads under gthread.
threads = worker_connections = int(os.environ.get("GUNICORN_THREADS", "80"))
# Both with the errors gunicorn answers itself (bad request line, oversized or invalid
# headers) sent as the app's JSON error body rather than an HTML page. gevent is the
# default: at 64 streams its overhead p95 was 34-43 ms against gthread's 87-101 ms, for
# the same CPU per turn.
_WORKER_CLASSES = {
    "gevent": "services.gunicorn_worker.JsonErrorGeventWorker",
    "gthread": "services.gunicorn_worker.JsonErrorWorker",
}
_worker = os.environ.get("GUNICORN_WORKER", "gevent")
if _worker not in _WORKER_CLASSES:
    raise SystemExit(f"GUNICORN_WORKER must be gevent or gthread, not {_worker!r}")
worker_class = _WORKER_CLASSES[_worker]
# Cloud Run owns the request timeout; gunicorn must not kill long streams.
timeout = 0
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "25"))
keepalive = 5
# Long query strings (a search text of up to 4000 characters, URL-encoded) must reach the
# app, which answers with a JSON error naming the field instead of gunicorn's HTML 414;
# Cloud Run's front end already bounds request size.
limit_request_line = 0
accesslog = None
