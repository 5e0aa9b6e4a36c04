"""AuthConfig: how bearer tokens are verified and minted. Built from Settings by the caller.

The algorithm is configuration, never taken from a token: one verifier accepts exactly one.

>>> AuthConfig(jwt_algorithm="HS256", jwt_secret_key="k" * 32).jwt_leeway_s
30.0
>>> AuthConfig(dev_mode=True).jwt_secret_key is None
True
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Algorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
# RFC 7518 §3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class AuthConfig(BaseModel):
    """Token settings. `dev_mode` lets requests without a token act as an admin of any tenant:
    for the local quick start only; off unless asked for (ESB_AUTH_DEV_MODE=1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jwt_algorithm: Algorithm = "HS256"
    jwt_secret_key: SecretStr | None = None
    # RS*/ES*: a JWKS file path or an http(s) URL with the public keys.
    jwt_jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    # An unknown `kid` reloads the JWKS at most this often (a bad token cannot hammer the IdP).
    jwt_jwks_refresh_s: float = Field(default=30.0, ge=0)
    # Keys are reloaded when older than this anyway, so a key removed from the JWKS stops working.
    jwt_jwks_max_age_s: float = Field(default=600.0, gt=0)
    dev_mode: bool = False

    @property
    def is_hmac(self) -> bool:
        return self.jwt_algorithm.startswith("HS")

    @model_validator(mode="after")
    def _keys_present(self) -> AuthConfig:
        if self.is_hmac and self.jwt_secret_key is not None:
            need = _HMAC_MIN_BYTES[self.jwt_algorithm]
            if len(self.jwt_secret_key.get_secret_value().encode()) < need:
                raise ValueError(
                    f"JWT_SECRET_KEY must be at least {need} bytes for {self.jwt_algorithm}; "
                    "generate one with: "
                    'python -c "import secrets; print(secrets.token_urlsafe(48))"'
                )
        if self.dev_mode:
            return self
        if self.is_hmac and self.jwt_secret_key is None:
            raise ValueError(
                f"JWT_ALGORITHM={self.jwt_algorithm} needs JWT_SECRET_KEY "
                "(or ESB_AUTH_DEV_MODE=1 for an unauthenticated local quick start)"
            )
        if not self.is_hmac and not self.jwt_jwks:
            raise ValueError(
                f"JWT_ALGORITHM={self.jwt_algorithm} needs JWT_JWKS: a JWKS file path or URL"
            )
        return self

    @model_validator(mode="after")
    def _jwks_over_tls(self) -> AuthConfig:
        """Keys fetched over plain HTTP could be swapped in transit: only loopback may."""
        if self.jwt_jwks and self.jwt_jwks.startswith("http://"):
            host = urlsplit(self.jwt_jwks).hostname
            if host not in ("localhost", "127.0.0.1", "::1"):
                raise ValueError(f"JWT_JWKS must be an https:// URL (or a file): {self.jwt_jwks}")
        return self


_FIELDS = {
    "jwt_algorithm": "jwt_algorithm",
    "jwt_secret_key": "jwt_secret_key",
    "jwt_jwks": "jwt_jwks",
    "jwt_issuer": "jwt_issuer",
    "jwt_audience": "jwt_audience",
    "jwt_leeway_s": "jwt_leeway_s",
    "jwt_jwks_refresh_s": "jwt_jwks_refresh_s",
    "jwt_jwks_max_age_s": "jwt_jwks_max_age_s",
    "dev_mode": "esb_auth_dev_mode",
}


def auth_config_from(settings: Any) -> AuthConfig:
    """AuthConfig from a Settings object; fields Settings does not (yet) have keep defaults.

    >>> class S: jwt_secret_key = "s" * 32; esb_auth_dev_mode = False
    >>> auth_config_from(S()).jwt_algorithm
    'HS256'
    """
    values = {}
    for field, attr in _FIELDS.items():
        value = getattr(settings, attr, None)
        if value is not None:
            values[field] = value
    return AuthConfig.model_validate(values)
