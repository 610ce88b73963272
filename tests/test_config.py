"""Settings from the environment, and secret references resolved by the real Secret Manager
client talking to a local server that speaks its REST protocol."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.config import ConfigError, Settings, env_names, secret_manager_resolver

ROOT = Path(__file__).resolve().parent.parent


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


# ---- placeholder keys where they would break a feature ----------------------------------------

REAL_LOOKING = "sk-proj-" + "Zq3vR8tY1uW6" * 4


@pytest.mark.parametrize(
    "key", ["placeholder", "changeme", "CHANGE_ME", "unused", "sk-xxx", "sk-XXXXXXXXXXXX", "<key>"]
)
@pytest.mark.parametrize("provider", ["openai", "auto"])
def test_a_placeholder_openai_key_is_refused_when_embeddings_use_openai(key, provider):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {"EMBEDDING_PROVIDER": provider, "OPENAI_API_KEY": key, "LLM_PROVIDERS": "anthropic"}
        )
    message = str(raised.value)
    assert "OPENAI_API_KEY looks like a placeholder" in message and "embedded" in message


def test_a_placeholder_chat_key_is_refused_only_for_a_listed_provider():
    env = {"EMBEDDING_PROVIDER": "local", "ANTHROPIC_API_KEY": "placeholder"}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert "ANTHROPIC_API_KEY looks like a placeholder" in str(raised.value)
    assert "LLM_PROVIDERS" in str(raised.value)
    # The cloud needs a version in every referenced secret: one the deployer has no key for
    # may hold a placeholder once its provider is not listed.
    assert Settings.from_env({**env, "LLM_PROVIDERS": "openai"}).anthropic_api_key
    with pytest.raises(ConfigError, match="OPENAI_API_KEY looks like a placeholder"):
        Settings.from_env({"EMBEDDING_PROVIDER": "local", "OPENAI_API_KEY": "sk-xxx"})


def test_real_keys_empty_keys_and_compatible_servers_are_accepted():
    assert Settings.from_env({"OPENAI_API_KEY": REAL_LOOKING}).resolved_embedding_provider == (
        "openai"
    )
    assert Settings.from_env({"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": ""})  # not configured
    # A compatible server (vLLM, Ollama, the test fakes) may take any key.
    compatible = Settings.from_env(
        {
            "EMBEDDING_PROVIDER": "openai",
            "OPENAI_API_KEY": "unused",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "ANTHROPIC_API_KEY": "unused",
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        }
    )
    assert compatible.openai_api_key == "unused"


def test_the_service_refuses_to_start_with_a_placeholder_embedding_key():
    """What a Cloud Run revision does with a placeholder in openai-api-key: gunicorn exits
    instead of serving, so the deploy step fails, and the log names the problem."""
    process = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "main:app"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
            "PORT": "0",
            "EMBEDDING_PROVIDER": "openai",
            "OPENAI_API_KEY": "placeholder",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0
    assert "OPENAI_API_KEY looks like a placeholder" in process.stdout + process.stderr
