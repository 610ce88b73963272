"""A local token issuer: signs Google-style ID tokens (RS256, with a kid) with a generated
RSA key and serves the matching x509 certificates the way googleapis.com does, so the real
google-auth verification path runs against it."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

CERTS_CACHE_CONTROL = "public, max-age=21600, must-revalidate, no-transform"


def key_and_cert(common_name: str) -> tuple[str, str]:
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


class TokenIssuer:
    """``mint`` signs claims; ``url`` serves ``{kid: certificate}``; ``impostor`` signs with
    another key under the same kid (a forged token)."""

    def __init__(self, kid: str = "test-key-1") -> None:
        self.kid = kid
        key_pem, self.cert_pem = key_and_cert("local-issuer")
        self.signer = crypt.RSASigner.from_string(key_pem, self.kid)
        other_pem, _ = key_and_cert("impostor")
        self.impostor = crypt.RSASigner.from_string(other_pem, self.kid)
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                issuer.fetches += 1
                body = json.dumps({issuer.kid: issuer.cert_pem}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                # As googleapis.com does: clients may keep the certificates this long.
                self.send_header("Cache-Control", CERTS_CACHE_CONTROL)
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

    def mint(self, claims: Mapping[str, Any], signer: crypt.Signer | None = None) -> str:
        return jwt.encode(signer or self.signer, dict(claims)).decode()

    def close(self) -> None:
        self.server.shutdown()
