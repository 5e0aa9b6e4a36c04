"""Bearer JWT verification: valid HS256, RS256 and ES256 tokens, and tokens minted here."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from cluster.security import Principal, TokenVerifier, Unauthorized, mint_token, public_jwk
from tests.unit.token_helpers import (
    EC_KEY,
    EC_P384,
    RSA_KEY,
    _pem,
    claims,
    hs_config,
    hs_token,
    rs_token,
    unsigned,
    write_jwks,
)


def test_valid_hs256(hs: TokenVerifier) -> None:
    token = hs_token(streams=["orders"], subscriptions=["hooks"], jti="t-1")
    principal = hs.verify(token)
    assert principal == Principal(
        subject="svc-orders",
        tenant_id="acme",
        role="publisher",
        streams=("orders",),
        subscriptions=("hooks",),
        token_id="t-1",
        expires_at=principal.expires_at,
    )


def test_valid_within_leeway(hs: TokenVerifier) -> None:
    assert hs.verify(hs_token(exp=int(time.time()) - 2)).tenant_id == "acme"


def test_grants_default_to_the_whole_tenant(hs: TokenVerifier) -> None:
    principal = hs.verify(hs_token())
    assert principal.streams == ("*",) and principal.subscriptions == ("*",)


def test_valid_rs256(rs: TokenVerifier) -> None:
    assert rs.verify(rs_token()).role == "publisher"


def test_token_without_kid_uses_the_only_key(rs: TokenVerifier) -> None:
    assert rs.verify(rs_token(kid=None)).subject == "svc-orders"


def test_valid_es256(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(
        path,
        public_jwk(_pem(EC_P384, False), "ES384", kid="p384"),  # other curve: never used
        public_jwk(_pem(EC_KEY, False), "ES256", kid="ec-1"),
    )
    config = hs_config(jwt_algorithm="ES256", jwt_secret_key=None, jwt_jwks=str(path))
    verifier = TokenVerifier(config)
    token = mint_token(config, "acme", "consumer", "reader", 60, private_key_pem=_pem(EC_KEY, True))
    assert verifier.verify(jwt_with_kid(token, "ec-1")).role == "consumer"
    p384 = jwt.encode(claims(), EC_P384, algorithm="ES384", headers={"kid": "p384"})
    with pytest.raises(Unauthorized):
        verifier.verify(p384)
    es256_by_p384_key = unsigned({"alg": "ES256", "kid": "p384"}, claims()) + ".AAAA"
    with pytest.raises(Unauthorized, match="unknown signing key"):
        verifier.verify(es256_by_p384_key)


def jwt_with_kid(token: str, kid: str) -> str:
    """The token as minted carries the thumbprint kid; the JWKS here names the key ec-1."""
    header = jwt.get_unverified_header(token)
    assert header["kid"] == public_jwk(_pem(EC_KEY, True), "ES256")["kid"]
    return jwt.encode(
        jwt.decode(token, options={"verify_signature": False}), EC_KEY, "ES256", {"kid": kid}
    )


def test_rs256_minted_with_private_key(rs: TokenVerifier, tmp_path: Path) -> None:
    token = mint_token(
        rs.config, "acme", "admin", "ops", 60, private_key_pem=_pem(RSA_KEY, True), kid="rsa-1"
    )
    assert rs.verify(token).role == "admin"


def test_mint_and_verify_round_trip() -> None:
    config = hs_config()
    token = mint_token(config, "acme", "consumer", "reader", 60, streams=["orders"])
    principal = TokenVerifier(config).verify(token)
    assert (principal.tenant_id, principal.role, principal.streams) == (
        "acme",
        "consumer",
        ("orders",),
    )
    assert principal.token_id
