"""Bearer JWT verification: signing keys from a JWKS file or URL are picked up, refetched at
most once per interval, and dropped after their max age."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.errors import ServiceUnavailable
from cluster.security import TokenVerifier, Unauthorized, public_jwk
from tests.unit.token_helpers import RSA_KEY, RSA_KEY_2, _pem, hs_config, rs_token, write_jwks


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
