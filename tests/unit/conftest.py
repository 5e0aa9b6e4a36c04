"""Fixtures of the JWT tests (test_security_tokens_*.py): an HS256 verifier, and an RS256 one
reading a JWKS file on a clock the test moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.security import TokenVerifier, public_jwk
from tests.unit.token_helpers import RSA_KEY, _pem, hs_config, write_jwks


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
