"""Helpers for the JWT tests (test_security_tokens_*.py): signing keys, claims, an HS256
config, JWKS files and token makers. The verifier fixtures (`hs`, `rs`, `clock`) are in
conftest.py."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cluster.security import AuthConfig

SECRET = "test-secret-" + "x" * 40
ISSUER, AUDIENCE = "https://issuer.test", "esb-api"


def _pem(key: Any, private: bool) -> bytes:
    if private:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_P384 = ec.generate_private_key(ec.SECP384R1())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "svc-orders",
        "tenant": "acme",
        "role": "publisher",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs_config(**kw: Any) -> AuthConfig:
    values: dict[str, Any] = {
        "jwt_algorithm": "HS256",
        "jwt_secret_key": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_leeway_s": 5,
    }
    return AuthConfig(**{**values, **kw})


def write_jwks(path: Path, *jwks: dict[str, str]) -> None:
    path.write_text(json.dumps({"keys": list(jwks)}))


def rs_token(key: Any = RSA_KEY, kid: str | None = "rsa-1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**overrides), key, algorithm="RS256", headers=headers)


def hs_token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
