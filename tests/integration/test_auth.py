"""Bearer tokens over HTTP: the JWT table against the running API (HS256, as the stack is
configured), the same API app configured for RS256 with a JWKS file, and roles and grants."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from cluster.security import public_jwk
from cluster.settings import Settings
from serve.app import create_app
from tests.conftest import AUDIENCE, ISSUER, Mint
from tests.integration.conftest import create_stream, refused

TENANT = "authz"
ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "tester",
        "tenant": TENANT,
        "role": "admin",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        **changes,
    }
    return {k: v for k, v in claims.items() if v is not None}


def _pem(key: rsa.RSAPrivateKey, private: bool = True) -> bytes:
    if private:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _tampered(token: str) -> str:
    """The payload swapped for one naming another tenant, the signature kept."""
    head, _, sig = token.split(".")
    body = jwt.utils.base64url_encode(json.dumps(_claims(tenant="victim")).encode()).decode()
    return f"{head}.{body}.{sig}"


def _hmac_token(secret: bytes, kid: str) -> str:
    """HS256 by hand: PyJWT refuses to sign with a PEM key, an attacker does not."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    parts = [jwt.utils.base64url_encode(json.dumps(d).encode()) for d in (header, _claims())]
    signing_input = b".".join(parts)
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


def _flip_last(token: str) -> str:
    """One signature character changed (to a letter it is not)."""
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def _hs(secret: str, **changes: Any) -> str:
    return jwt.encode(_claims(**changes), secret, algorithm="HS256")


# Each builder takes the stack's HS256 secret and answers a token the API must refuse.
REJECTED: dict[str, Callable[[str], str]] = {
    "alg none": lambda s: jwt.encode(_claims(), None, algorithm="none"),
    "RS256 for an HS256 server": lambda s: jwt.encode(_claims(), _pem(ATTACKER_KEY), "RS256"),
    "wrong secret": lambda s: _hs("x" * 48),
    "tampered payload": lambda s: _tampered(_hs(s)),
    "tampered signature": lambda s: _flip_last(_hs(s)),
    "wrong aud": lambda s: _hs(s, aud="someone-else"),
    "wrong iss": lambda s: _hs(s, iss="https://evil.example"),
    "expired": lambda s: _hs(s, exp=int(time.time()) - 300),
    "nbf in the future": lambda s: _hs(s, nbf=int(time.time()) + 600),
    "missing exp": lambda s: _hs(s, exp=None),
    "unknown role": lambda s: _hs(s, role="root"),
    "not a JWT": lambda s: "not-a-token",
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_jwt_table_rejected_with_401(stack: Settings, case: str) -> None:
    assert stack.jwt_secret_key is not None
    token = REJECTED[case](stack.jwt_secret_key.get_secret_value())
    answer = httpx.get(
        f"{stack.api_url}/api/v1/streams", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 401, (case, answer.text)
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}]
)
def test_no_or_malformed_token_is_401_and_health_is_public(
    stack: Settings, headers: dict[str, str]
) -> None:
    answer = httpx.get(f"{stack.api_url}/api/v1/pipelines", headers=headers)
    assert answer.status_code == 401, answer.text
    assert "Bearer" in answer.headers["www-authenticate"]
    assert httpx.get(f"{stack.api_url}/health", headers=headers).status_code == 200


def test_roles_and_grants(stack: Settings, http: httpx.Client, mint: Mint, unique: str) -> None:
    orders = create_stream(http, TENANT, f"orders-{unique}")
    other = create_stream(http, TENANT, f"other-{unique}")
    event = {
        "event_type": "order.placed",
        "source_capability": "shop",
        "aggregate_id": "o-1",
        "aggregate_type": "Order",
        "payload": {"n": 1},
    }

    def call(role: str, method: str, path: str, **kwargs: Any) -> int:
        grants = kwargs.pop("grants", {})
        auth = {"Authorization": f"Bearer {mint(TENANT, role, **grants)}"}
        return http.request(method, path, headers=auth, **kwargs).status_code

    sid = orders["stream_id"]
    publish = {"json": {**event, "stream_id": sid}}
    assert call("viewer", "POST", "/api/v1/events", **publish) == 403
    assert call("consumer", "POST", "/api/v1/events", **publish) == 403
    assert call("publisher", "POST", "/api/v1/events", **publish) == 201
    assert call("publisher", "GET", f"/api/v1/streams/{sid}/events") == 403
    assert call("consumer", "GET", f"/api/v1/streams/{sid}/events") == 200
    assert call("viewer", "GET", f"/api/v1/streams/{sid}") == 200
    assert call("consumer", "DELETE", f"/api/v1/streams/{sid}") == 403
    new = {
        "json": {
            "stream_name": f"n-{unique}",
            "topic_name": f"n-{unique}",
            "source_capability": "t",
        }
    }
    assert call("publisher", "POST", "/api/v1/streams", **new) == 403
    # A token granted one stream (by id here, by name below) may use it, not the others.
    narrow = {"grants": {"streams": [orders["stream_id"]]}}
    other_publish = {"json": {**event, "stream_id": other["stream_id"]}}
    assert call("publisher", "POST", "/api/v1/events", **publish, **narrow) == 201
    assert call("publisher", "POST", "/api/v1/events", **other_publish, **narrow) == 403
    by_name = mint(TENANT, "viewer", streams=[f"orders-{unique}"])
    listed = http.get("/api/v1/streams", headers={"Authorization": f"Bearer {by_name}"})
    assert [s["stream_id"] for s in listed.json()["streams"]] == [sid]
    # The tenant is the token's: a body naming another is refused, never acted on.
    elsewhere = {**event, "stream_id": sid, "tenant_id": "victim"}
    assert call("admin", "POST", "/api/v1/events", json=elsewhere) == 403
    # Subscriptions: the same, by subscription grant.
    group = f"g-{unique}"
    body = {"subscription_name": group, "stream_id": sid, "consumer_group_id": group}
    assert call("viewer", "POST", "/api/v1/subscriptions", json=body) == 403
    made = http.post("/api/v1/subscriptions", json=body)
    assert made.status_code == 201, made.text
    sub = f"/api/v1/subscriptions/{made.json()['subscription_id']}"
    assert call("viewer", "GET", sub, grants={"subscriptions": [group]}) == 200
    assert call("viewer", "GET", sub, grants={"subscriptions": ["another"]}) == 403
    assert call("viewer", "POST", f"{sub}/pause") == 403
    assert call("consumer", "POST", f"{sub}/pause") == 200
    # WebSockets check the same role: a publisher may not tail events, a consumer may.
    tail = f"{stack.api_url.replace('http', 'ws', 1)}/ws/events/{sid}?access_token="
    assert "role" in refused(tail + mint(TENANT, "publisher"), 4403)
    with connect(tail + mint(TENANT, "consumer"), open_timeout=30):
        pass


def test_server_owned_fields_are_ignored(http: httpx.Client, unique: str) -> None:
    name = f"owned-{unique}"
    body = {
        "stream_name": name,
        "topic_name": name,
        "source_capability": "t",
        "created_by": "mallory",
        "kafka_topic": "esb.victim.stolen",
        "created_at": "2000-01-01T00:00:00Z",
    }
    made = http.post("/api/v1/streams", json=body)
    assert made.status_code == 201, made.text
    record = http.get(f"/api/v1/streams/{made.json()['stream_id']}").json()
    assert record["kafka_topic"] == f"esb.{TENANT}.{name}"
    assert record["created_by"] == f"admin@{TENANT}"
    assert record["tenant_id"] == TENANT


@pytest.fixture(scope="module")
def rs256(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Path]]:
    """The API app configured for RS256 with a JWKS file, on the stack's services."""
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public_jwk(_pem(SIGNING_KEY), "RS256", "k1")]}))
    settings = stack.model_copy(
        update={
            "jwt_algorithm": "RS256",
            "jwt_jwks": str(jwks),
            "jwt_secret_key": None,
            "jwt_jwks_refresh_s": 0,  # the new kid below is looked up at once
        }
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, jwks


SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NEXT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_rs256_jwks_table(rs256: tuple[TestClient, Path]) -> None:
    client, jwks = rs256

    def status(token: str) -> int:
        answer = client.get("/api/v1/streams", headers={"Authorization": f"Bearer {token}"})
        return answer.status_code

    def rs(key: rsa.RSAPrivateKey, kid: str) -> str:
        return jwt.encode(_claims(), _pem(key), algorithm="RS256", headers={"kid": kid})

    assert status(rs(SIGNING_KEY, "k1")) == 200
    # HS/RS confusion: HS256 signed with the server's public key as the secret.
    assert status(_hmac_token(_pem(SIGNING_KEY, private=False), kid="k1")) == 401
    assert status(rs(ATTACKER_KEY, "k1")) == 401  # right kid, wrong key
    # A new signing key published in the JWKS works without a restart.
    keys = [public_jwk(_pem(k), "RS256", kid) for k, kid in ((SIGNING_KEY, "k1"), (NEXT_KEY, "k2"))]
    jwks.write_text(json.dumps({"keys": keys}))
    assert status(rs(NEXT_KEY, "k2")) == 200
    assert status(rs(ATTACKER_KEY, "k-unknown")) == 401  # unknown kid
