"""The service skeleton: the app factory in-process, and main:app under a real gunicorn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from services.app import create_app
from services.config import Settings
from tests.conftest import free_port

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
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.get_json()["checks"] == {"database": "ok"}
    finally:
        app.extensions["runtime"].close()


@pytest.fixture
def gunicorn(database_url, redis_server):
    if redis_server.process is None:
        redis_server.start()
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "GUNICORN_THREADS": "4",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "main:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited: {process.stderr.read().decode()[-2000:]}")
        try:
            get(f"{base}/healthz")
            break
        except OSError:
            time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(30)


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
