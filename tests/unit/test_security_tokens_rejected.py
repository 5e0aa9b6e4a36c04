"""Bearer JWT verification: the rejection table of issue 6 (401), and roles or grants too weak
for an action (403)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from cluster.security import Action, Forbidden, TokenVerifier, Unauthorized, authorize
from tests.unit.token_helpers import (
    RSA_KEY,
    RSA_KEY_2,
    _pem,
    b64,
    claims,
    hs_token,
    rs_token,
    unsigned,
)


def alg_none() -> str:
    return unsigned({"alg": "none", "typ": "JWT"}, claims()) + "."


def hmac_signed(header: dict[str, Any], secret: bytes) -> str:
    """Signed by hand: PyJWT itself refuses a PEM as an HMAC secret."""
    signing_input = unsigned(header, claims(role="admin"))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def tampered_signature(token: str) -> str:
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{body}.{b64(bytes(raw))}"


def tampered_payload(token: str) -> str:
    head, _, sig = token.split(".")
    return f"{head}.{b64(json.dumps(claims(role='admin')).encode())}.{sig}"


PUBLIC_PEM = _pem(RSA_KEY, False)
# case: (which verifier, token maker, a fragment of the expected reason)
REJECTED: dict[str, tuple[str, Callable[[], str], str]] = {
    "alg none (HS verifier)": ("hs", alg_none, "algorithm 'none'"),
    "alg none (RS verifier)": ("rs", alg_none, "algorithm 'none'"),
    "alg none, empty signature on HS256 header": (
        "hs",
        lambda: unsigned({"alg": "HS256"}, claims()) + ".",
        "signature",
    ),
    "HS256 signed with the RSA public key PEM": (
        "rs",
        lambda: hmac_signed({"alg": "HS256", "kid": "rsa-1"}, PUBLIC_PEM),
        "algorithm 'HS256'",
    ),
    "RS256 header but HMAC signature with the public PEM": (
        "rs",
        lambda: hmac_signed({"alg": "RS256", "kid": "rsa-1"}, PUBLIC_PEM),
        "signature",
    ),
    "RS256 token to an HS verifier": ("hs", lambda: rs_token(), "algorithm 'RS256'"),
    "wrong aud": ("hs", lambda: hs_token(aud="someone-else"), "(aud)"),
    "missing aud": ("hs", lambda: hs_token(aud=None), "'aud'"),
    "wrong iss": ("hs", lambda: hs_token(iss="https://evil.test"), "(iss)"),
    "missing iss": ("hs", lambda: hs_token(iss=None), "'iss'"),
    "expired": ("hs", lambda: hs_token(exp=int(time.time()) - 60), "expired"),
    "expired (RS)": ("rs", lambda: rs_token(exp=int(time.time()) - 60), "expired"),
    "nbf in the future": ("hs", lambda: hs_token(nbf=int(time.time()) + 600), "not valid yet"),
    "iat in the future": ("hs", lambda: hs_token(iat=int(time.time()) + 600), "not valid yet"),
    "missing exp": ("hs", lambda: hs_token(exp=None), "'exp'"),
    "missing sub": ("hs", lambda: hs_token(sub=None), "'sub'"),
    "missing tenant": ("hs", lambda: hs_token(tenant=None), "tenant"),
    "tenant with a namespace separator": ("hs", lambda: hs_token(tenant="acme.other"), "tenant"),
    "unknown role": ("hs", lambda: hs_token(role="root"), "role"),
    "grants not a list": ("hs", lambda: hs_token(streams={"a": 1}), "streams"),
    "unknown kid": ("rs", lambda: rs_token(kid="nobody"), "unknown signing key"),
    "other RSA key under a known kid": ("rs", lambda: rs_token(key=RSA_KEY_2), "signature"),
    "tampered signature (HS)": ("hs", lambda: tampered_signature(hs_token()), "signature"),
    "tampered signature (RS)": ("rs", lambda: tampered_signature(rs_token()), "signature"),
    "tampered payload": ("hs", lambda: tampered_payload(hs_token()), "signature"),
    "wrong secret": ("hs", lambda: hs_token(secret="another-secret-" + "y" * 40), "signature"),
    "not a JWT": ("hs", lambda: "not-a-token", "malformed"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_rejected_with_401(case: str, hs: TokenVerifier, rs: TokenVerifier) -> None:
    which, make, reason = REJECTED[case]
    verifier = hs if which == "hs" else rs
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(make())
    assert caught.value.status == 401
    assert reason in caught.value.detail
    assert caught.value.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_role_too_weak_is_403(hs: TokenVerifier) -> None:
    viewer = hs.verify(hs_token(role="viewer"))
    authorize(viewer, Action.STREAM_READ)
    with pytest.raises(Forbidden) as caught:
        authorize(viewer, Action.EVENT_PUBLISH, stream="orders")
    assert caught.value.status == 403


def test_grant_too_narrow_is_403(hs: TokenVerifier) -> None:
    publisher = hs.verify(hs_token(streams=["orders"]))
    authorize(publisher, Action.EVENT_PUBLISH, stream=("s-123", "orders"))
    with pytest.raises(Forbidden):
        authorize(publisher, Action.EVENT_PUBLISH, stream=("s-456", "payments"))
