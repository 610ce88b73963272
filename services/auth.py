"""Who is calling: API keys and Firebase / Identity Platform ID tokens.

The user id a request acts for always comes from the credential, never from the body:

- an API key (``Authorization: Bearer mak_<id>_<secret>``) belongs to one user; only the
  SHA-256 of the whole key is stored, and keys are created, listed and revoked with
  ``python -m services.admin keys ...`` (a key can also be generated where it is needed and
  only its hash, ``<id>:<sha256>``, handed to the database: see ``new_key``);
- a *service* key may act for users of its own through ``X-Act-As-User: bob``; the request
  then acts for user ``<key owner>:bob``, so a service can never reach anyone else's data;
- a Firebase / Identity Platform ID token is checked with google-auth (signature against
  Google's certificates, cached as long as their endpoint allows; issuer; audience = the
  project; expiry) and acts for user ``firebase:<uid>``.

The ``Authorization: Bearer`` header is parsed by services/oidc.py ``bearer_token``, for
the API and the functions alike.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.db import Pool
from services.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)
from services.memories.validation import check_id
from services.oidc import AuthError, GoogleCerts, bearer_token

KEY_PREFIX = "mak_"
_KEY_FORMAT = re.compile(r"^mak_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_HASH_FORMAT = re.compile(r"^([0-9a-f]{16}):([0-9a-f]{64})$")
ACT_AS_HEADER = "X-Act-As-User"
LAST_USED_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class ApiKey:
    id: str
    user_id: str
    name: str
    service: bool
    rate_limit_per_minute: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: ``user_id`` is whose data the request may touch."""

    user_id: str
    subject: str  # "key:<id>" or "firebase:<uid>", for logs and rate limits
    rate_limit_per_minute: int | None = None
    service: bool = False


_KEY_COLUMNS = (
    "id, user_id, name, service, rate_limit_per_minute, created_at, last_used_at, revoked_at"
)


class ApiKeyStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(
        self,
        user_id: str,
        *,
        name: str = "",
        service: bool = False,
        rate_limit_per_minute: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; the secret is returned once and never stored."""
        secret, key_hash = new_key()
        key = self.add(
            user_id,
            key_hash,
            name=name,
            service=service,
            rate_limit_per_minute=rate_limit_per_minute,
        )
        return key, secret

    def add(
        self,
        user_id: str,
        key_hash: str,
        *,
        name: str = "",
        service: bool = False,
        rate_limit_per_minute: int | None = None,
    ) -> ApiKey:
        """Store a key known only by its hash (``<id>:<sha256>``, from ``new_key``)."""
        check_id(user_id, "user_id")
        match = _HASH_FORMAT.match(key_hash.strip())
        if match is None:
            raise InvalidInput("key hash must look like <16 hex digits>:<64 hex digits>", "hash")
        if rate_limit_per_minute is not None and rate_limit_per_minute <= 0:
            raise InvalidInput("rate limit must be positive", "rate_limit_per_minute")
        key_id, digest = match.groups()
        with self.pool.transaction() as tx:
            row = tx.one(
                f"""
                INSERT INTO api_keys (id, user_id, name, secret_hash, service,
                    rate_limit_per_minute)
                VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING
                RETURNING {_KEY_COLUMNS}
                """,
                [key_id, user_id, name[:200], digest, service, rate_limit_per_minute],
            )
        if row is None:
            raise Conflict(f"API key {key_id} already exists", "hash")
        return ApiKey(*row)

    def list(self, user_id: str | None = None) -> list[ApiKey]:
        with self.pool.transaction() as tx:
            rows = tx.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys "
                "WHERE %s::text IS NULL OR user_id = %s ORDER BY created_at, id",
                [user_id, user_id],
            )
        return [ApiKey(*row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        with self.pool.transaction() as tx:
            row = tx.one(
                f"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) "
                f"WHERE id = %s RETURNING {_KEY_COLUMNS}",
                [key_id],
            )
        if row is None:
            raise NotFound(f"API key {key_id} not found", "key_id")
        return ApiKey(*row)

    def verify(self, secret: str) -> ApiKey | None:
        """The live key ``secret`` belongs to, or None (unknown, wrong secret or revoked)."""
        match = _KEY_FORMAT.match(secret)
        if match is None:
            return None
        key_id = match.group(1)
        # Every request runs this: one round trip (a read), not a transaction's three.
        rows = self.pool.read(
            f"SELECT {_KEY_COLUMNS}, secret_hash FROM api_keys WHERE id = %s", [key_id]
        )
        if not rows or not hmac.compare_digest(rows[0][-1], _digest(secret)):
            return None
        key = ApiKey(*rows[0][:-1])
        if key.revoked_at is not None:
            return None
        if self._due_for_last_used(key_id):
            with self.pool.transaction() as tx:
                tx.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", [key_id])
        return key

    def _due_for_last_used(self, key_id: str) -> bool:
        # last_used_at is for humans auditing keys; writing it on every request would turn
        # each read into a write.
        now = time.monotonic()
        with self._lock:
            if now - self._last_used.get(key_id, float("-inf")) < LAST_USED_EVERY_SECONDS:
                return False
            self._last_used[key_id] = now
            return True


class IdTokenVerifier:
    """Firebase / Identity Platform ID tokens for one Google Cloud project."""

    def __init__(self, project_id: str, certs: GoogleCerts, clock_skew_seconds: int = 30) -> None:
        self.project_id = project_id
        self.issuer = f"https://securetoken.google.com/{project_id}"
        self.certs = certs
        self.clock_skew_seconds = clock_skew_seconds

    def verify(self, token: str) -> Mapping[str, Any]:
        try:
            claims = self.certs.verify(token, self.project_id, self.clock_skew_seconds)
        except AuthError as error:
            if error.status == 503:  # Google's certificates are out of reach for now
                raise Unavailable("cannot check ID tokens right now; retry shortly") from None
            raise Unauthorized(f"ID token rejected: {error}") from None
        if claims.get("iss") != self.issuer:
            raise Unauthorized("ID token was issued for another project")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 128:
            raise Unauthorized("ID token has no subject")
        return claims


class Authenticator:
    def __init__(self, keys: ApiKeyStore, id_tokens: IdTokenVerifier | None = None) -> None:
        self.keys = keys
        self.id_tokens = id_tokens

    def authenticate(self, authorization: str | None, act_as: str | None = None) -> Principal:
        try:
            token = bearer_token(authorization)
        except AuthError as error:
            raise Unauthorized(f"{error} (an API key or an ID token)") from None
        if token.startswith(KEY_PREFIX):
            return self._from_key(token, act_as)
        if token.count(".") == 2 and self.id_tokens is not None:
            if act_as:
                raise Forbidden(f"only service keys may send {ACT_AS_HEADER}")
            claims = self.id_tokens.verify(token)
            return Principal(
                user_id=f"firebase:{claims['sub']}", subject=f"firebase:{claims['sub']}"
            )
        raise Unauthorized("unknown credential: send an API key or an ID token")

    def _from_key(self, token: str, act_as: str | None) -> Principal:
        key = self.keys.verify(token)
        if key is None:
            raise Unauthorized("API key is not valid (unknown or revoked)")
        user_id = key.user_id
        if act_as:
            if not key.service:
                raise Forbidden(f"only service keys may send {ACT_AS_HEADER}")
            user_id = f"{key.user_id}:{check_id(act_as, ACT_AS_HEADER)}"
        return Principal(
            user_id=user_id,
            subject=f"key:{key.id}",
            rate_limit_per_minute=key.rate_limit_per_minute,
            service=key.service,
        )


def make_id_token_verifier(project_id: str, certs_url: str) -> IdTokenVerifier | None:
    if not project_id:
        return None
    return IdTokenVerifier(project_id, GoogleCerts(certs_url))


def new_key() -> tuple[str, str]:
    """A new key and its hash ``<id>:<sha256>``; the hash reveals nothing about the key, so
    it may pass through logs and job arguments on its way to ``ApiKeyStore.add``."""
    key_id = secrets.token_hex(8)
    secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return secret, f"{key_id}:{_digest(secret)}"


def _digest(secret: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()
