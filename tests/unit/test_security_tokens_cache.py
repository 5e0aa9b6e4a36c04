"""The verified-token cache: the signature is checked once per token, never past its expiry."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from cluster.errors import Unauthorized
from cluster.security import TokenVerifier
from tests.unit.token_helpers import hs_token


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens jwt.decode is asked to check."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_a_token_is_decoded_once(hs: TokenVerifier, decoded: list[str]) -> None:
    token = hs_token()
    first, again = hs.verify(token), hs.verify(token)
    assert first == again and decoded == [token]


def test_the_cache_forgets_a_token_at_its_expiry(
    hs: TokenVerifier, decoded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = hs_token(exp=int(time.time()) + 60)
    hs.verify(token)
    later = time.time() + 60 + hs.config.jwt_leeway_s + 1
    monkeypatch.setattr(time, "time", lambda: later)
    hs.verify(token)  # PyJWT's own clock is not moved: the token verifies again, for real
    assert decoded == [token, token]


def test_a_bad_token_is_never_cached(hs: TokenVerifier, decoded: list[str]) -> None:
    forged = hs_token(secret="another-secret-" + "y" * 40)
    for _ in range(2):
        with pytest.raises(Unauthorized, match="signature"):
            hs.verify(forged)
    assert decoded == [forged, forged]
