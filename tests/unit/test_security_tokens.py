"""Bearer JWT verification: the rejection table of issue 6, valid tokens, JWKS key pickup."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from cluster.cli.tokens import add_tokens_parser, tokens_command
from cluster.errors import ServiceUnavailable
from cluster.security import (
    Action,
    AuthConfig,
    Forbidden,
    Principal,
    TokenVerifier,
    Unauthorized,
    auth_config_from,
    authorize,
    bearer_token,
    mint_token,
    public_jwk,
)

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


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def rs(tmp_path: Path, clock: list[float]) -> TokenVerifier:
    """An RS256 verifier reading tmp_path/jwks.json, which holds RSA_KEY as kid rsa-1."""
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(_pem(RSA_KEY, True), "RS256", kid="rsa-1"))
    config = hs_config(jwt_algorithm="RS256", jwt_secret_key=None, jwt_jwks=str(path))
    return TokenVerifier(config, clock=lambda: clock[0])


@pytest.fixture
def hs() -> TokenVerifier:
    return TokenVerifier(hs_config())


def rs_token(key: Any = RSA_KEY, kid: str | None = "rsa-1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**overrides), key, algorithm="RS256", headers=headers)


def hs_token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"


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


def test_new_kid_in_the_jwks_file_is_picked_up(
    rs: TokenVerifier, tmp_path: Path, clock: list[float]
) -> None:
    assert rs.verify(rs_token()).tenant_id == "acme"
    rotated = rs_token(key=RSA_KEY_2, kid="rsa-2")
    with pytest.raises(Unauthorized, match="unknown signing key"):
        rs.verify(rotated)
    write_jwks(
        tmp_path / "jwks.json",
        public_jwk(_pem(RSA_KEY, True), "RS256", kid="rsa-1"),
        public_jwk(_pem(RSA_KEY_2, True), "RS256", kid="rsa-2"),
    )
    with pytest.raises(Unauthorized):  # reloads at most every jwt_jwks_refresh_s
        rs.verify(rotated)
    clock[0] += rs.config.jwt_jwks_refresh_s
    assert rs.verify(rotated).tenant_id == "acme"  # same verifier, no restart
    assert rs.verify(rs_token()).tenant_id == "acme"


def test_key_removed_from_jwks_stops_working_after_max_age(
    rs: TokenVerifier, tmp_path: Path, clock: list[float]
) -> None:
    assert rs.verify(rs_token()).tenant_id == "acme"
    write_jwks(tmp_path / "jwks.json", public_jwk(_pem(RSA_KEY_2, True), "RS256", kid="rsa-2"))
    clock[0] += rs.config.jwt_jwks_max_age_s
    with pytest.raises(Unauthorized):
        rs.verify(rs_token())


async def test_jwks_url_refetched_on_unknown_kid_at_most_once_per_interval() -> None:
    now = [0.0]
    served = {"keys": [public_jwk(_pem(RSA_KEY, True), "RS256", kid="rsa-1")]}
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return json.dumps(served).encode()

    config = hs_config(
        jwt_algorithm="RS256", jwt_secret_key=None, jwt_jwks="https://idp.test/jwks.json"
    )
    verifier = TokenVerifier(config, fetch=fetch, clock=lambda: now[0])
    assert (await verifier.averify(rs_token())).tenant_id == "acme"
    for _ in range(5):  # a flood of unknown kids costs no fetches within the interval
        with pytest.raises(Unauthorized):
            await verifier.averify(rs_token(kid="bogus"))
    assert len(fetched) == 1
    served["keys"].append(public_jwk(_pem(RSA_KEY_2, True), "RS256", kid="rsa-2"))
    now[0] += config.jwt_jwks_refresh_s
    assert (await verifier.averify(rs_token(key=RSA_KEY_2, kid="rsa-2"))).role == "publisher"
    assert fetched == ["https://idp.test/jwks.json"] * 2


def test_jwks_unreachable_at_first_is_503_then_keeps_old_keys() -> None:
    now = [0.0]
    up = [False]

    def fetch(url: str) -> bytes:
        if not up[0]:
            raise ConnectionError("connection refused")
        return json.dumps(
            {"keys": [public_jwk(_pem(RSA_KEY, True), "RS256", kid="rsa-1")]}
        ).encode()

    config = hs_config(jwt_algorithm="RS256", jwt_secret_key=None, jwt_jwks="https://idp.test/")
    verifier = TokenVerifier(config, fetch=fetch, clock=lambda: now[0])
    with pytest.raises(ServiceUnavailable):
        verifier.verify(rs_token())
    up[0] = True
    assert verifier.verify(rs_token()).tenant_id == "acme"
    up[0] = False
    now[0] += config.jwt_jwks_max_age_s
    assert verifier.verify(rs_token()).tenant_id == "acme"  # the IdP blips: old keys still work


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


def test_missing_token_is_401_without_error_code_unless_dev_mode() -> None:
    with pytest.raises(Unauthorized) as caught:
        TokenVerifier(hs_config()).authenticate(None)
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="esb"'}
    dev = TokenVerifier(AuthConfig(dev_mode=True)).authenticate(None)
    assert dev.dev and dev.role == "admin"


def test_bearer_token_from_header_or_query() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token(None, "from-query") == "from-query"
    assert bearer_token(None, None) is None
    for bad in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer   "):
        with pytest.raises(Unauthorized):
            bearer_token(bad)


def test_config_refuses_what_cannot_be_secure() -> None:
    with pytest.raises(ValidationError, match="needs JWT_SECRET_KEY"):
        AuthConfig(jwt_algorithm="HS256")
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        AuthConfig.model_validate({"jwt_secret_key": "short"})
    with pytest.raises(ValidationError, match="needs JWT_JWKS"):
        AuthConfig(jwt_algorithm="RS256")
    with pytest.raises(ValidationError):
        AuthConfig.model_validate({"jwt_algorithm": "none", "jwt_secret_key": SECRET})
    with pytest.raises(ValidationError, match="https"):
        AuthConfig(jwt_algorithm="RS256", jwt_jwks="http://idp.example/jwks.json")
    assert AuthConfig(jwt_algorithm="RS256", jwt_jwks="http://127.0.0.1:9/jwks.json").jwt_jwks
    assert AuthConfig(dev_mode=True).dev_mode


def test_auth_config_from_settings_like_object() -> None:
    class FakeSettings:
        jwt_secret_key = SecretStr(SECRET)
        jwt_algorithm = "HS256"
        jwt_issuer = ISSUER
        esb_auth_dev_mode = False

    config = auth_config_from(FakeSettings())
    assert config.jwt_issuer == ISSUER and config.jwt_audience is None
    assert config.jwt_secret_key is not None
    assert config.jwt_secret_key.get_secret_value() == SECRET


def _cli(argv: list[str], config: AuthConfig) -> str:
    parser = argparse.ArgumentParser(prog="esb")
    add_tokens_parser(parser.add_subparsers(dest="command", required=True))
    out, err = io.StringIO(), io.StringIO()
    assert tokens_command(parser.parse_args(argv), config, out=out, err=err) == 0
    return out.getvalue().strip()


def test_cli_tokens_create() -> None:
    config = hs_config()
    argv = ["tokens", "create", "--tenant", "acme", "--role", "consumer", "--ttl", "15m"]
    token = _cli([*argv, "--stream", "orders", "--stream", "s-1"], config)
    principal = TokenVerifier(config).verify(token)
    assert principal.subject == "consumer@acme"
    assert principal.streams == ("orders", "s-1") and principal.subscriptions == ("*",)
    assert principal.expires_at is not None
    assert 890 <= principal.expires_at - time.time() <= 900


def test_cli_jwk_then_rs256_token(tmp_path: Path) -> None:
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(_pem(RSA_KEY, True))
    jwks_file = tmp_path / "jwks.json"
    config = hs_config(jwt_algorithm="RS256", jwt_secret_key=None, jwt_jwks=str(jwks_file))
    jwks_file.write_text(_cli(["tokens", "jwk", str(key_file)], config))
    assert "PRIVATE" not in jwks_file.read_text() and '"d"' not in jwks_file.read_text()
    argv = ["tokens", "create", "--tenant", "acme", "--role", "admin"]
    token = _cli([*argv, "--private-key", str(key_file)], config)
    assert TokenVerifier(config).verify(token).role == "admin"
