"""The service skeleton: the app factory in-process, and main:app under a real gunicorn."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from services.app import create_app
from services.config import Settings
from tests.processes import Gunicorn

ROOT = Path(__file__).resolve().parent.parent


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_factory_serves_health_and_readiness(database_url):
    app = create_app(Settings(database_url=database_url, embed_in_process=False))
    try:
        client = app.test_client()
        assert client.get("/healthz").get_json() == {"status": "ok"}
        assert client.get("/health").get_json() == {"status": "ok"}  # external checks
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.get_json()["checks"] == {"database": "ok"}
    finally:
        app.extensions["runtime"].close()


@pytest.fixture
def gunicorn(database_url, redis_server):
    if redis_server.process is None:
        redis_server.start()
    server = Gunicorn({"DATABASE_URL": database_url, "REDIS_URL": redis_server.url})
    yield server.url
    server.stop()


def test_gunicorn_serves_main_app_and_reports_redis_outage(gunicorn, redis_server):
    assert get(f"{gunicorn}/healthz") == (200, {"status": "ok"})
    status, body = get(f"{gunicorn}/readyz")
    assert (status, body["checks"]) == (200, {"database": "ok", "redis": "ok"})
    redis_server.stop()
    try:
        status, body = get(f"{gunicorn}/readyz")
        assert status == 503 and body["checks"]["redis"].startswith("error")
        assert get(f"{gunicorn}/healthz")[0] == 200  # liveness does not depend on Redis
    finally:
        redis_server.start()
    assert get(f"{gunicorn}/readyz")[0] == 200
