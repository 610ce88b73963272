"""Settings from the environment, and secret references resolved by the real Secret Manager
client talking to a local server that speaks its REST protocol."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.config import ConfigError, Settings, env_names, secret_manager_resolver


class FakeSecretManager(ThreadingHTTPServer):
    """GET /v1/projects/P/secrets/S/versions/V:access, as Secret Manager's REST API."""

    def __init__(self, secrets: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secrets = secrets
        self.requests: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeSecretManager

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        self.server.requests.append(path)
        name = path.removeprefix("/v1/").removesuffix(":access")
        if name not in self.server.secrets:
            self._send(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
            return
        data = base64.b64encode(self.server.secrets[name].encode()).decode()
        self._send(200, {"name": name, "payload": {"data": data}})

    def _send(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def secret_manager():
    server = FakeSecretManager(
        {
            "projects/p1/secrets/openai/versions/3": "sk-from-secret-manager",
            "projects/p1/secrets/db/versions/latest": "hunter2",
        }
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def real_client(endpoint: str):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.port == 8080
    assert settings.resolved_embedding_provider == "local"
    assert settings.database_url == "" and settings.instance_connection_name == ""


def test_values_are_parsed_by_type():
    settings = Settings.from_env(
        {"PORT": "9000", "HNSW_INDEX": "true", "DEDUP_THRESHOLD": "0.9", "REDIS_URL": "redis://x"}
    )
    assert (settings.port, settings.hnsw_index, settings.dedup_threshold) == (9000, True, 0.9)
    assert settings.redis_url == "redis://x"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"HNSW_INDEX": "maybe"}, "HNSW_INDEX"),
        ({"EMBEDDING_PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"EMBEDDING_PROVIDER": "cohere"}, "EMBEDDING_PROVIDER"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE"),
        ({"DEDUP_THRESHOLD": "1.5"}, "DEDUP_THRESHOLD"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert message in str(raised.value)


def test_secret_references_are_fetched_from_secret_manager(secret_manager):
    resolver = secret_manager_resolver(real_client(secret_manager.endpoint))
    settings = Settings.from_env(
        {
            "OPENAI_API_KEY": "sm://projects/p1/secrets/openai/versions/3",
            "DB_PASSWORD": "sm://projects/p1/secrets/db",
        },
        resolver,
    )
    assert settings.openai_api_key == "sk-from-secret-manager"
    assert settings.db_password == "hunter2"  # a reference without a version means latest
    assert sorted(secret_manager.requests) == [
        "/v1/projects/p1/secrets/db/versions/latest:access",
        "/v1/projects/p1/secrets/openai/versions/3:access",
    ]


def test_a_malformed_secret_reference_is_a_config_error(secret_manager):
    resolver = secret_manager_resolver(real_client(secret_manager.endpoint))
    with pytest.raises(ConfigError):
        Settings.from_env({"OPENAI_API_KEY": "sm://openai"}, resolver)


def test_no_google_library_is_imported_without_secret_references():
    code = (
        "import sys; from services.config import Settings; Settings.from_env({}); "
        "import services.app; "
        "print(sorted(m for m in sys.modules if m.startswith('google')))"
    )
    # 'google' and 'google.cloud' are empty namespace packages that site-packages' .pth
    # files create at interpreter start; no client library may follow them.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['google', 'google.cloud']"


def test_env_names_cover_every_setting():
    names = env_names()
    assert "DATABASE_URL" in names and "INSTANCE_CONNECTION_NAME" in names
    assert len(names) == len(set(names))
