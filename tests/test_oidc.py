"""Trigger authentication with real Google-style ID tokens: a locally generated RSA key, a
self-signed certificate served over HTTP like Google's certificate endpoint, and the
google-auth verification path the functions use."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from services.oidc import AuthError, CertCache, TriggerVerifier, http_certs_fetcher

SCHEDULER = "scheduler@proj.iam.gserviceaccount.com"
AUDIENCE = "https://region-proj.cloudfunctions.net/apply_retention"


def _key_and_cert(common_name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


class LocalIssuer:
    """Mints ID tokens like Google's and serves its certificates like googleapis.com does."""

    def __init__(self) -> None:
        self.kid = "test-key-1"
        key_pem, self.cert_pem = _key_and_cert("local-issuer")
        self.signer = crypt.RSASigner.from_string(key_pem, self.kid)
        other_pem, _ = _key_and_cert("impostor")
        self.impostor = crypt.RSASigner.from_string(other_pem, self.kid)
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                issuer.fetches += 1
                body = json.dumps({issuer.kid: issuer.cert_pem}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v1/certs"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

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
        payload = {
            "iss": issuer,
            "aud": audience,
            "sub": "1234567890",
            "email": email,
            "email_verified": email_verified,
            "iat": now - 10,
            "exp": now + expires_in,
        }
        return jwt.encode(signer or self.signer, payload).decode()

    def certs(self) -> CertCache:
        return CertCache(http_certs_fetcher(self.url))

    def verifier(self, mode: str = "oidc", audiences=(AUDIENCE,)) -> TriggerVerifier:
        return TriggerVerifier(mode, [SCHEDULER], audiences, certs=self.certs())

    def close(self) -> None:
        self.server.shutdown()


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
