"""Configuration: one immutable Settings object built from the environment.

Every knob the service reads is a field of ``Settings``, with its default here and its
meaning in the README's configuration table (``env_names()`` lists the variables; a test
keeps the table and the fields the same). A value of the form
``sm://projects/P/secrets/S/versions/V`` is fetched from Secret Manager when the settings
are built; the Google client is imported only if such a value is present.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from services.limits import MAX_CONTENT_CHARS

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
    embed_threads: int = 1
    # Memory store
    dedup_threshold: float = 0.0
    max_content_chars: int = MAX_CONTENT_CHARS
    hnsw_index: bool = False
    hnsw_min_rows: int = 5000
    # Background functions (embed_memories, apply_retention): see docs/FUNCTIONS.md.
    pubsub_topic: str = ""
    function_auth: str = "oidc"
    trigger_service_accounts: str = ""
    trigger_audience: str = ""
    embed_time_budget_seconds: float = 50.0
    # Background reflection in the embedding sweep (services/reflection.py; 0 minutes = off)
    reflection_idle_minutes: int = 30
    reflection_threads_per_run: int = 20
    reflection_time_budget_seconds: float = 120.0
    reflection_max_messages: int = 40
    # Retention defaults (per-user overrides live in retention_policies; 0 = never/unlimited)
    retention_max_age_days: int = 0
    retention_max_count: int = 10000
    retention_importance_floor: float = 0.8
    retention_archive_after_days: int = 180
    retention_thread_idle_days: int = 90
    retention_batch_users: int = 200
    retention_time_budget_seconds: float = 240.0
    retention_pause_ratio: float = 1.0
    archive_bucket: str = ""
    archive_dir: str = ""
    # Language models (see docs/AGENT.md). A provider is used when its key (or, for
    # OpenAI-compatible servers, its base URL) is set; with none, the offline provider answers.
    llm_providers: str = "anthropic,openai"
    anthropic_api_key: str = ""
    anthropic_base_url: str = ""
    anthropic_models: str = "claude-sonnet-4-5-20250929,claude-sonnet-5-5"
    anthropic_cheap_model: str = "claude-haiku-4-5"
    anthropic_prompt_caching: bool = True
    openai_chat_models: str = "gpt-4.1-mini,gpt-5.4-mini"
    openai_chat_base_url: str = ""
    openai_cheap_model: str = "gpt-4o-mini"
    llm_cheap_routing: bool = False
    llm_timeout_seconds: float = 60.0
    llm_connect_timeout_seconds: float = 5.0
    llm_max_retries: int = 2
    llm_turn_deadline_seconds: float = 30.0
    llm_retry_base_seconds: float = 0.5
    llm_breaker_failures: int = 5
    llm_breaker_open_seconds: float = 30.0
    llm_max_tokens: int = 1024
    # The agent turn
    agent_top_k: int = 8
    agent_memory_token_budget: int = 1500
    agent_max_steps: int = 5
    agent_history_messages: int = 20
    # Episodic memory: every chat turn is kept as a searchable memory of kind "episode".
    agent_episodes: bool = True
    episode_ttl_days: int = 0
    # The HTTP API (see README "HTTP API")
    log_format: str = "text"
    google_cloud_project: str = ""
    max_body_bytes: int = 1_048_576
    rate_limit_per_minute: int = 120
    rate_limit_burst: int = 30
    firebase_project_id: str = ""
    firebase_certs_url: str = (
        "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
    )

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
        if self.log_format not in ("text", "json"):
            raise ConfigError("LOG_FORMAT must be text or json")
        for name in ("max_body_bytes", "rate_limit_per_minute", "rate_limit_burst"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.upper()} must be positive")
        if self.embedding_provider not in ("auto", "local", "openai"):
            raise ConfigError("EMBEDDING_PROVIDER must be one of auto, local, openai")
        if self.resolved_embedding_provider == "openai" and not self.openai_api_key:
            raise ConfigError("EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY")
        self._refuse_placeholder_keys()
        if self.db_ip_type not in ("private", "public", "psc"):
            raise ConfigError("DB_IP_TYPE must be one of private, public, psc")
        if not 0 <= self.dedup_threshold <= 1:
            raise ConfigError("DEDUP_THRESHOLD must be in [0, 1] (0: the model's default)")
        for name in ("db_pool_size", "embed_batch_size", "max_content_chars", "port"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.upper()} must be positive")
        if self.function_auth not in ("oidc", "iam", "none"):
            raise ConfigError("FUNCTION_AUTH must be one of oidc, iam, none")
        if not 0 <= self.retention_importance_floor <= 1.01:
            raise ConfigError("RETENTION_IMPORTANCE_FLOOR must be in [0, 1.01] (1.01: none)")
        for name in (
            "retention_max_age_days",
            "retention_max_count",
            "retention_archive_after_days",
            "retention_thread_idle_days",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.upper()} must be 0 (never) or positive")
        if self.reflection_idle_minutes < 0:
            raise ConfigError("REFLECTION_IDLE_MINUTES must be 0 (off) or positive")
        for name in (
            "reflection_threads_per_run",
            "reflection_time_budget_seconds",
            "reflection_max_messages",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.upper()} must be positive")
        if self.retention_pause_ratio < 0:
            raise ConfigError("RETENTION_PAUSE_RATIO must be >= 0")
        for name in (
            "retention_batch_users",
            "retention_time_budget_seconds",
            "embed_time_budget_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.upper()} must be positive")
        for name in (
            "llm_timeout_seconds",
            "llm_connect_timeout_seconds",
            "llm_turn_deadline_seconds",
            "llm_breaker_failures",
            "llm_max_tokens",
            "agent_top_k",
            "agent_max_steps",
            "agent_history_messages",
            "embed_threads",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.upper()} must be positive")
        if self.episode_ttl_days < 0:
            raise ConfigError("EPISODE_TTL_DAYS must be >= 0 (0: kept until retention)")
        if self.llm_max_retries < 0 or self.agent_memory_token_budget < 0:
            raise ConfigError("LLM_MAX_RETRIES and AGENT_MEMORY_TOKEN_BUDGET must be >= 0")
        if self.agent_top_k > 50 or self.agent_history_messages > 200:
            raise ConfigError("AGENT_TOP_K must be <= 50 and AGENT_HISTORY_MESSAGES <= 200")
        unknown = set(csv(self.llm_providers)) - {"anthropic", "openai"}
        if unknown:
            raise ConfigError(f"LLM_PROVIDERS: unknown provider(s) {sorted(unknown)}")

    def _refuse_placeholder_keys(self) -> None:
        # A stand-in key fails every provider call, and the failures are absorbed (the
        # outbox keeps memories pending, the router falls through to the next provider), so
        # the deployment would look healthy with the feature broken. Refuse it at start-up.
        # A custom base URL is a compatible server that may take any key.
        if (
            self.resolved_embedding_provider == "openai"
            and not self.openai_base_url
            and looks_like_placeholder(self.openai_api_key)
        ):
            raise ConfigError(
                "OPENAI_API_KEY looks like a placeholder, but embeddings use OpenAI "
                f"(EMBEDDING_PROVIDER={self.embedding_provider}): no memory would ever be "
                "embedded. Set a real key (or EMBEDDING_PROVIDER=local where the local model "
                "is installed: requirements-local.txt)"
            )
        chat_keys = {
            "anthropic": ("ANTHROPIC_API_KEY", self.anthropic_api_key, self.anthropic_base_url),
            "openai": (
                "OPENAI_API_KEY",
                self.openai_api_key,
                self.openai_chat_base_url or self.openai_base_url,
            ),
        }
        for provider in csv(self.llm_providers):
            name, key, base_url = chat_keys.get(provider, ("", "", ""))
            if key and not base_url and looks_like_placeholder(key):
                raise ConfigError(
                    f"{name} looks like a placeholder, but LLM_PROVIDERS lists {provider}: "
                    "every chat turn would fail over to the next provider. Set a real key, "
                    f"or remove {provider} from LLM_PROVIDERS"
                )


# Values people store for a key they do not have (after an sk-/sk-ant-/sk-proj- prefix).
_PLACEHOLDER_WORDS = {
    "changeme",
    "dummy",
    "fake",
    "fixme",
    "none",
    "null",
    "placeholder",
    "replaceme",
    "secret",
    "todo",
    "unset",
    "unused",
}


def looks_like_placeholder(key: str) -> bool:
    """True for an empty key or an obvious stand-in ("placeholder", "changeme", "sk-xxx",
    "<your key>"); real provider keys are long random strings and never match."""
    text = key.strip().lower()
    for prefix in ("sk-ant-", "sk-proj-", "sk-"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    bare = "".join(ch for ch in text if ch.isalnum())
    return (
        not bare
        or set(bare) <= {"x"}
        or bare in _PLACEHOLDER_WORDS
        or any(word in bare for word in ("placeholder", "changeme", "replaceme"))
        or ("your" in bare and "key" in bare)
        or (text.startswith("<") and text.endswith(">"))
    )


def csv(value: str) -> list[str]:
    """A comma-separated setting as a list, blanks dropped (model lists, provider order)."""
    return [item.strip() for item in value.split(",") if item.strip()]


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
