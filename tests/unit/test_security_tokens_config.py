"""Bearer JWT verification: the missing or malformed bearer header, what AuthConfig refuses, and
the `esb tokens` CLI."""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cluster.cli.tokens import register, tokens_command
from cluster.security import (
    AuthConfig,
    TokenVerifier,
    Unauthorized,
    auth_config_from,
    bearer_token,
)
from tests.unit.token_helpers import ISSUER, RSA_KEY, SECRET, _pem, hs_config


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
    register(parser.add_subparsers(dest="command", required=True))
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
