"""Authentication of the HTTP functions' callers (Cloud Scheduler) by Google-signed OIDC tokens.

Cloud Scheduler sends ``Authorization: Bearer <ID token>`` minted for the scheduler's
service account. ``FUNCTION_AUTH`` chooses how such a token is checked:

- ``oidc`` (default): signature against Google's certificates (fetched over HTTPS, cached,
  injectable for tests), issuer, expiry, audience, and the ``email`` claim must be one of
  ``TRIGGER_SERVICE_ACCOUNTS`` with ``email_verified``. Use with a function that the
  platform lets through (``--allow-unauthenticated``): the function is its own gate.
- ``iam``: the platform (Cloud Run IAM, ``--no-allow-unauthenticated``) already verified the
  token and strips its signature before forwarding, so only the claims are checked.
- ``none``: no check at all; for a laptop only, and only when set explicitly.

google-auth is imported on first use.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.config import Settings, csv

log = logging.getLogger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CERTS_TTL_SECONDS = 300.0


class AuthError(Exception):
    """The caller is not allowed; ``status`` is 401 (no/invalid token) or 403 (wrong caller)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    email: str
    subject: str
    verified: bool


CertsFetcher = Callable[[], Mapping[str, str]]


def http_certs_fetcher(url: str = GOOGLE_CERTS_URL, timeout: float = 5.0) -> CertsFetcher:
    """Google-style certificates ``{kid: PEM x509 cert}`` from ``url``."""

    def fetch() -> Mapping[str, str]:
        import google.auth.transport.requests
        import requests

        session = requests.Session()
        request = google.auth.transport.requests.Request(session)
        response = request(url, method="GET", timeout=timeout)
        if response.status != 200:
            raise AuthError(f"could not fetch token certificates ({response.status})", 503)
        return json.loads(response.data.decode("utf-8"))

    return fetch


class CertCache:
    """Certificates kept for a few minutes; refetched early when a token names an unknown key."""

    def __init__(self, fetch: CertsFetcher, ttl: float = CERTS_TTL_SECONDS) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._certs: Mapping[str, str] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def get(self, kid: str | None) -> Mapping[str, str]:
        with self._lock:
            stale = time.monotonic() - self._fetched_at > self._ttl
            if stale or (kid is not None and kid not in self._certs):
                self._certs = dict(self._fetch())
                self._fetched_at = time.monotonic()
            return self._certs


class TriggerVerifier:
    """Checks an ``Authorization`` header for one of the allowed service accounts."""

    def __init__(
        self,
        mode: str,
        allowed_emails: Sequence[str],
        audiences: Sequence[str] = (),
        certs: CertCache | None = None,
        clock_skew_seconds: int = 30,
    ) -> None:
        if mode not in ("oidc", "iam", "none"):
            raise ValueError(f"unknown FUNCTION_AUTH mode {mode!r}")
        self.mode = mode
        self.allowed = {email.lower() for email in allowed_emails}
        self.audiences = list(audiences)
        self.certs = certs or CertCache(http_certs_fetcher())
        self.clock_skew_seconds = clock_skew_seconds

    def verify(self, authorization: str | None, request_url: str) -> Caller | None:
        """The verified caller (None in ``none`` mode); raises AuthError otherwise."""
        if self.mode == "none":
            return None
        if not self.allowed:
            log.error("FUNCTION_AUTH=%s but TRIGGER_SERVICE_ACCOUNTS is empty", self.mode)
            raise AuthError("no caller is allowed: TRIGGER_SERVICE_ACCOUNTS is not set", 403)
        token = bearer_token(authorization)
        claims = self._claims(token, self._audiences_for(request_url))
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise AuthError("token is not issued by Google")
        email = str(claims.get("email", "")).lower()
        if not email or claims.get("email_verified") is not True:
            raise AuthError("token carries no verified email", 403)
        if email not in self.allowed:
            raise AuthError(f"{email} may not trigger this function", 403)
        return Caller(email=email, subject=str(claims.get("sub", "")), verified=True)

    def _claims(self, token: str, audiences: list[str]) -> Mapping[str, Any]:
        from google.auth import exceptions, jwt

        try:
            if self.mode == "iam":
                claims = jwt.decode(token, verify=False)
                _check_time_and_audience(claims, audiences, self.clock_skew_seconds)
                return claims
            header = jwt.decode_header(token)
            certs = self.certs.get(header.get("kid"))
            return jwt.decode(
                token,
                certs=certs,
                audience=audiences,
                clock_skew_in_seconds=self.clock_skew_seconds,
            )
        except AuthError:
            raise
        except (ValueError, exceptions.GoogleAuthError) as error:
            raise AuthError(f"invalid token: {error}") from None

    def _audiences_for(self, request_url: str) -> list[str]:
        if self.audiences:
            return self.audiences
        # Cloud Scheduler's default audience is the target URL; behind the platform's
        # front end the app sees http://, so accept the https:// form of the same URL.
        base = request_url.split("?", 1)[0]
        https = "https://" + base.split("://", 1)[-1]
        return list(dict.fromkeys([base, https, https.rstrip("/")]))


def _check_time_and_audience(claims: Mapping[str, Any], audiences: list[str], skew: int) -> None:
    now = time.time()
    if float(claims.get("exp", 0)) + skew < now:
        raise AuthError("token expired")
    audience = claims.get("aud")
    if audience not in audiences:
        raise AuthError("token audience does not match this function")


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()


def make_verifier(settings: Settings, certs: CertCache | None = None) -> TriggerVerifier:
    return TriggerVerifier(
        settings.function_auth,
        csv(settings.trigger_service_accounts),
        csv(settings.trigger_audience),
        certs=certs,
    )
