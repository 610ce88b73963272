"""Structured logs in Cloud Logging's format, and Prometheus metrics."""

from __future__ import annotations

import json
import logging

import pytest

from services.app import create_app
from services.auth import ApiKeyStore
from services.config import Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def json_app(database_url):
    app = create_app(
        Settings(
            database_url=database_url,
            embed_in_process=False,
            log_format="json",
            google_cloud_project="demo-proj",
        )
    )
    yield app
    app.extensions["runtime"].close()
    logging.getLogger().handlers = [
        h for h in logging.getLogger().handlers if not getattr(h, "_memory_agent", False)
    ]


def test_request_logs_are_cloud_logging_json_with_trace_and_no_content(json_app, capsys):
    from services.telemetry import configure_logging

    configure_logging(json_app.extensions["runtime"].settings)  # bind to captured stderr
    _, secret = ApiKeyStore(json_app.extensions["runtime"].pool).create("logged-user")
    client = json_app.test_client()
    response = client.post(
        "/v1/memories",
        headers={
            "Authorization": f"Bearer {secret}",
            "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1",
        },
        json={"content": "a very private sentence"},
    )
    assert response.status_code == 201
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    [entry] = [line for line in lines if line.get("route") == "/v1/memories"]
    assert entry["severity"] == "INFO"
    assert entry["logging.googleapis.com/trace"] == (
        "projects/demo-proj/traces/105445aa7843bc8bf206b12000100000"
    )
    assert entry["status"] == 201 and entry["request_id"]
    assert entry["user"] != "logged-user" and len(entry["user"]) == 16
    everything = json.dumps(lines)
    assert "a very private sentence" not in everything
    assert secret not in everything
