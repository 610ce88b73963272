"""Configuration: one immutable Settings object built from the environment.

Every knob the service reads lives here, with its default and meaning in FIELDS (the README
table is generated from the same list). A value of the form
``sm://projects/P/secrets/S/versions/V`` is fetched from Secret Manager when the settings
are built; the Google client is imported only if such a value is present.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

SECRET_PREFIX = "sm://"

SecretResolver = Callable[[str], str]


class ConfigError(ValueError):
    """A setting is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Settings:
    # Serving
    port: int = 8080
    log_level: str = "INFO"
    # Database: INSTANCE_CONNECTION_NAME wins, then DATABASE_URL, else embedded PostgreSQL.
    instance_connection_name: str = ""
    database_url: str = ""
    db_name: str = "memory_agent"
    db_user: str = "postgres"
    db_password: str = ""
    db_iam_auth: bool = False
    db_ip_type: str = "private"
    db_pool_size: int = 10
    data_dir: str = ".data"
    # Redis (optional): hot thread copies; Postgres stays the durable copy.
    redis_url: str = ""
    thread_cache_ttl_seconds: int = 86400
    # Embeddings
    embedding_provider: str = "auto"
    embedding_model: str = ""
    openai_api_key: str = ""
    openai_base_url: str = ""
    embed_batch_size: int = 64
    embed_in_process: bool = True
    embed_poll_seconds: float = 0.5
    # Memory store
    dedup_threshold: float = 0.0
    max_content_chars: int = 4000
    hnsw_index: bool = False
    hnsw_min_rows: int = 5000

    @property
    def resolved_embedding_provider(self) -> str:
        if self.embedding_provider != "auto":
            return self.embedding_provider
        return "openai" if self.openai_api_key else "local"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        secret_resolver: SecretResolver | None = None,
    ) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            if raw.startswith(SECRET_PREFIX):
                resolver = secret_resolver or secret_manager_resolver()
                raw = resolver(raw)
            values[f.name] = _parse(f.name, f.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.embedding_provider not in ("auto", "local", "openai"):
            raise ConfigError("EMBEDDING_PROVIDER must be one of auto, local, openai")
        if self.resolved_embedding_provider == "openai" and not self.openai_api_key:
            raise ConfigError("EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY")
        if self.db_ip_type not in ("private", "public", "psc"):
            raise ConfigError("DB_IP_TYPE must be one of private, public, psc")
        if not 0 <= self.dedup_threshold <= 1:
            raise ConfigError("DEDUP_THRESHOLD must be in [0, 1] (0: the model's default)")
        for name in ("db_pool_size", "embed_batch_size", "max_content_chars", "port"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.upper()} must be positive")


def env_names() -> list[str]:
    """The environment variables Settings reads (Terraform sets a subset of these)."""
    return [f.name.upper() for f in fields(Settings)]


def _parse(name: str, type_name: str, raw: str) -> object:
    try:
        if type_name == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name.upper()}: cannot parse {raw!r} as {type_name}") from None
    return raw


def secret_manager_resolver(client: object | None = None) -> SecretResolver:
    """Resolve ``sm://`` references with google-cloud-secret-manager (imported on first use)."""
    state: dict[str, object] = {"client": client}

    def resolve(reference: str) -> str:
        name = reference[len(SECRET_PREFIX) :]
        if not name.startswith("projects/") or "/secrets/" not in name:
            raise ConfigError(
                f"secret reference {reference!r} must look like "
                "sm://projects/P/secrets/S/versions/V"
            )
        if "/versions/" not in name:
            name += "/versions/latest"
        if state["client"] is None:
            from google.cloud import secretmanager

            state["client"] = secretmanager.SecretManagerServiceClient()
        response = state["client"].access_secret_version(name=name)  # type: ignore[attr-defined]
        return response.payload.data.decode("utf-8")

    return resolve
