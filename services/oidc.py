"""Authentication of the HTTP functions' callers (Cloud Scheduler) by Google-signed OIDC tokens.

Cloud Scheduler sends ``Authorization: Bearer <ID token>`` minted for the scheduler's
service account. ``FUNCTION_AUTH`` chooses how such a token is checked:

- ``oidc`` (default): google-auth's verification against Google's certificates (fetched
  over HTTPS and cached as the endpoint's Cache-Control says, injectable for tests):
  signature, expiry, audience; then the issuer, and the ``email`` claim must be one of
  ``TRIGGER_SERVICE_ACCOUNTS`` with ``email_verified``. Use with a function that the
  platform lets through (``--allow-unauthenticated``): the function is its own gate.
- ``iam``: the platform (Cloud Run IAM, ``--no-allow-unauthenticated``) already verified the
  token and strips its signature before forwarding, so only the claims are checked.
- ``none``: no check at all; for a laptop only, and only when set explicitly.

google-auth is imported on first use.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.config import Settings, csv

log = logging.getLogger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


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


class GoogleCerts:
    """Google-style token certificates at ``url`` (``{kid: PEM certificate}`` or a JWK set)
    and google-auth's verification of a token against them.

    google-auth fetches the certificates on every verification unless its transport
    caches; as its documentation recommends, the transport's requests session is wrapped in
    CacheControl, which keeps them as long as the endpoint's ``Cache-Control: max-age``
    allows (Google's say hours, and Google publishes a new key well before signing with
    it). One instance is one cache: build it once per process.
    """

    def __init__(self, url: str = GOOGLE_CERTS_URL, timeout: float = 5.0) -> None:
        import cachecontrol
        import google.auth.transport.requests
        import requests

        self.url = url
        session = cachecontrol.CacheControl(requests.Session())
        # google-auth fetches without a timeout (its transport's default is 120 s); a
        # token check must fail fast instead.
        self._request = functools.partial(
            google.auth.transport.requests.Request(session), timeout=timeout
        )

    def verify(
        self, token: str, audience: str | list[str], clock_skew_seconds: int
    ) -> Mapping[str, Any]:
        """The token's claims once its signature, expiry and audience hold; AuthError (401,
        or 503 when the certificates cannot be fetched) otherwise."""
        from google.auth import exceptions
        from google.oauth2 import id_token

        try:
            return id_token.verify_token(
                token,
                self._request,  # the transport, with a timeout
                audience=audience,
                certs_url=self.url,
                clock_skew_in_seconds=clock_skew_seconds,
            )
        except exceptions.TransportError as error:
            message = f"could not fetch token certificates: {_first_line(error)}"
            raise AuthError(message, 503) from None
        except (ValueError, exceptions.GoogleAuthError) as error:
            raise AuthError(f"invalid token: {_first_line(error)}") from None


class TriggerVerifier:
    """Checks an ``Authorization`` header for one of the allowed service accounts."""

    def __init__(
        self,
        mode: str,
        allowed_emails: Sequence[str],
        audiences: Sequence[str] = (),
        certs: GoogleCerts | None = None,
        clock_skew_seconds: int = 30,
    ) -> None:
        if mode not in ("oidc", "iam", "none"):
            raise ValueError(f"unknown FUNCTION_AUTH mode {mode!r}")
        self.mode = mode
        self.allowed = {email.lower() for email in allowed_emails}
        self.audiences = list(audiences)
        self.certs = certs or GoogleCerts()
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
        if self.mode == "oidc":
            return self.certs.verify(token, audiences, self.clock_skew_seconds)
        from google.auth import exceptions, jwt

        try:
            claims = jwt.decode(token, verify=False)
        except (ValueError, exceptions.GoogleAuthError) as error:
            raise AuthError(f"invalid token: {_first_line(error)}") from None
        _check_time_and_audience(claims, audiences, self.clock_skew_seconds)
        return claims

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
    """The token of an ``Authorization: Bearer <token>`` header (the one parser of it, for
    the API and the functions alike); AuthError (401) saying what is wrong otherwise."""
    if not authorization:
        raise AuthError("missing Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def make_verifier(settings: Settings, certs: GoogleCerts | None = None) -> TriggerVerifier:
    return TriggerVerifier(
        settings.function_auth,
        csv(settings.trigger_service_accounts),
        csv(settings.trigger_audience),
        certs=certs,
    )
