"""Trigger authentication with real Google-style ID tokens: a locally generated RSA key, a
self-signed certificate served over HTTP like Google's certificate endpoint, and the
google-auth verification path the functions use."""

from __future__ import annotations

import time

import pytest
from google.auth import crypt

from services.oidc import AuthError, GoogleCerts, TriggerVerifier
from tests.fakes.id_tokens import TokenIssuer

SCHEDULER = "scheduler@proj.iam.gserviceaccount.com"
AUDIENCE = "https://region-proj.cloudfunctions.net/apply_retention"


class LocalIssuer(TokenIssuer):
    """Mints scheduler ID tokens like Google's (see tests/fakes/id_tokens.py)."""

    def token(
        self,
        email: str = SCHEDULER,
        audience: str = AUDIENCE,
        *,
        expires_in: int = 3600,
        email_verified: bool = True,
        issuer: str = "https://accounts.google.com",
        signer: crypt.Signer | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "sub": "1234567890",
            "email": email,
            "email_verified": email_verified,
            "iat": now - 10,
            "exp": now + expires_in,
        }
        return self.mint(claims, signer)

    def certs(self) -> GoogleCerts:
        return GoogleCerts(self.url)

    def verifier(self, mode: str = "oidc", audiences=(AUDIENCE,)) -> TriggerVerifier:
        return TriggerVerifier(mode, [SCHEDULER], audiences, certs=self.certs())


@pytest.fixture(scope="module")
def issuer():
    local = LocalIssuer()
    yield local
    local.close()


def test_valid_scheduler_token_is_accepted(issuer):
    caller = issuer.verifier().verify(f"Bearer {issuer.token()}", AUDIENCE)
    assert caller is not None and caller.email == SCHEDULER


@pytest.mark.parametrize(
    "header_of, status",
    [
        (lambda i: None, 401),
        (lambda i: "Basic abc", 401),
        (lambda i: "Bearer not-a-jwt", 401),
        (lambda i: f"Bearer {i.token(expires_in=-3600)}", 401),
        (lambda i: f"Bearer {i.token(audience='https://elsewhere.example')}", 401),
        (lambda i: f"Bearer {i.token(issuer='https://evil.example')}", 401),
        (lambda i: f"Bearer {i.token(signer=i.impostor)}", 401),
        (lambda i: f"Bearer {i.token(email='intruder@proj.iam.gserviceaccount.com')}", 403),
        (lambda i: f"Bearer {i.token(email_verified=False)}", 403),
    ],
    ids=[
        "missing",
        "not-bearer",
        "garbage",
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "forged-signature",
        "other-account",
        "unverified-email",
    ],
)
def test_bad_tokens_are_rejected(issuer, header_of, status):
    with pytest.raises(AuthError) as caught:
        issuer.verifier().verify(header_of(issuer), AUDIENCE)
    assert caught.value.status == status


def test_audience_defaults_to_the_https_form_of_the_request_url(issuer):
    verifier = issuer.verifier(audiences=())
    http_url = AUDIENCE.replace("https://", "http://") + "?x=1"
    assert verifier.verify(f"Bearer {issuer.token()}", http_url) is not None


def test_certificates_are_cached(issuer):
    verifier = issuer.verifier()
    before = issuer.fetches
    for _ in range(3):
        verifier.verify(f"Bearer {issuer.token()}", AUDIENCE)
    assert issuer.fetches - before == 1


def test_iam_mode_checks_claims_of_a_signature_stripped_token(issuer):
    header, payload, _ = issuer.token().split(".")
    stripped = f"{header}.{payload}."
    verifier = issuer.verifier(mode="iam")
    assert verifier.verify(f"Bearer {stripped}", AUDIENCE).email == SCHEDULER
    other = issuer.token(email="intruder@proj.iam.gserviceaccount.com").rsplit(".", 1)[0] + "."
    with pytest.raises(AuthError):
        verifier.verify(f"Bearer {other}", AUDIENCE)


def test_none_mode_needs_no_token_and_no_accounts():
    assert TriggerVerifier("none", []).verify(None, AUDIENCE) is None


def test_oidc_mode_without_allowed_accounts_rejects_everyone(issuer):
    verifier = TriggerVerifier("oidc", [], [AUDIENCE], certs=issuer.certs())
    with pytest.raises(AuthError) as caught:
        verifier.verify(f"Bearer {issuer.token()}", AUDIENCE)
    assert caught.value.status == 403


def test_certificates_out_of_reach_are_a_503_not_a_rejection(issuer):
    unreachable = GoogleCerts("http://127.0.0.1:9/oauth2/v1/certs", timeout=2.0)
    verifier = TriggerVerifier("oidc", [SCHEDULER], [AUDIENCE], certs=unreachable)
    with pytest.raises(AuthError) as caught:
        verifier.verify(f"Bearer {issuer.token()}", AUDIENCE)
    assert caught.value.status == 503
