"""Verifying and minting OAuth 2.0 bearer JWTs.

The algorithm comes from AuthConfig and nothing else: a token whose header names another
(`none`, HS256 signed with an RSA public key, ...) is refused before any key is chosen.
RS*/ES* keys come from a JWKS file or URL, looked up by `kid`; an unknown kid reloads the
JWKS (at most every `jwt_jwks_refresh_s`), so a new signing key works without a restart.

>>> config = AuthConfig(jwt_secret_key="s" * 32, jwt_issuer="esb", jwt_audience="esb-api")
>>> token = mint_token(config, "acme", "publisher", "svc-orders", ttl_s=60)
>>> TokenVerifier(config).verify(token).tenant_id
'acme'
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cluster.errors import InvalidInput, ServiceUnavailable, Unauthorized
from cluster.security.config import AuthConfig
from cluster.security.principal import ANY, ROLES, Principal, Role, is_valid_tenant_id

__all__ = ["TokenVerifier", "bearer_token", "mint_token", "public_jwk"]

_MAX_JWKS_BYTES = 1 << 20
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_JWK_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
Fetch = Callable[[str], bytes]
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def bearer_token(authorization: str | None, access_token: str | None = None) -> str | None:
    """The token from an `Authorization: Bearer` header, else from `?access_token=` (which
    browsers need for WebSockets). A malformed header is a 401, never silently ignored.

    >>> bearer_token("Bearer abc"), bearer_token(None, "xyz"), bearer_token(None)
    ('abc', 'xyz', None)
    """
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be `Bearer <token>`")
        return token.strip()
    return access_token or None


def _fetch_url(url: str) -> bytes:
    with httpx.Client(timeout=5.0, follow_redirects=False) as client:
        answer = client.get(url, headers={"accept": "application/json"})
        answer.raise_for_status()
        if len(answer.content) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS larger than 1 MiB")
        return answer.content


def _read_source(source: str, fetch: Fetch) -> bytes:
    if source.startswith(("https://", "http://")):
        return fetch(source)
    return Path(source).read_bytes()[:_MAX_JWKS_BYTES]


def _public_key(jwk: Mapping[str, Any], algorithm: str) -> PublicKey | None:
    """The key for the configured algorithm, or None when this JWK is not one (other type,
    curve, `use` or `alg`): such keys are skipped, never coerced."""
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", algorithm) != algorithm:
        return None
    try:
        if algorithm[:2] in ("RS", "PS"):
            if jwk.get("kty") != "RSA":
                return None
            key = RSAAlgorithm.from_jwk(dict(jwk))
            return key if isinstance(key, rsa.RSAPublicKey) else None
        if jwk.get("kty") != "EC" or jwk.get("crv") != _JWK_CURVES[algorithm]:
            return None
        ec_key = ECAlgorithm.from_jwk(dict(jwk))
        if (
            isinstance(ec_key, ec.EllipticCurvePublicKey)
            and ec_key.curve.name == _CURVES[algorithm]
        ):
            return ec_key
    except (jwt.InvalidKeyError, ValueError, KeyError, TypeError):
        return None
    return None


class _Jwks:
    """The JWKS keys by kid, reloaded on an unknown kid (rate-limited) or when stale."""

    def __init__(self, config: AuthConfig, fetch: Fetch, clock: Callable[[], float]) -> None:
        assert config.jwt_jwks
        self._source = config.jwt_jwks
        self._algorithm = config.jwt_algorithm
        self._refresh_s = config.jwt_jwks_refresh_s
        self._max_age_s = config.jwt_jwks_max_age_s
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str | None, PublicKey] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def needs_reload(self, kid: str | None) -> bool:
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._max_age_s:
            return True
        return self._lookup(kid) is None and now - self._loaded_at >= self._refresh_s

    def reload(self) -> None:
        with self._lock:
            try:
                document = json.loads(_read_source(self._source, self._fetch))
                entries = document["keys"]
                if not isinstance(entries, list):
                    raise TypeError("`keys` is not a list")
            except Exception as exc:
                if self._loaded_at is None:
                    raise ServiceUnavailable(
                        f"cannot load the JWKS from {self._source}: {exc}"
                    ) from None
                self._loaded_at = self._clock()  # keep the old keys; retry after refresh_s
                return
            keys: dict[str | None, PublicKey] = {}
            for entry in entries:
                if isinstance(entry, dict) and (key := _public_key(entry, self._algorithm)):
                    keys[entry.get("kid")] = key
            self._keys, self._loaded_at = keys, self._clock()

    def _lookup(self, kid: str | None) -> PublicKey | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))  # one key: a token without kid may use it
        return self._keys.get(kid)

    def key(self, kid: str | None) -> PublicKey:
        if self.needs_reload(kid):
            self.reload()
        key = self._lookup(kid)
        if key is None:
            if kid is None:
                raise Unauthorized("the token has no `kid` and the JWKS holds several keys")
            raise Unauthorized(f"unknown signing key id (kid) {kid!r}")
        return key


class TokenVerifier:
    """Turns a bearer token into a Principal, or raises Unauthorized (401).

    `fetch` (URL -> bytes) and `clock` (monotonic seconds, for JWKS refresh limits) are
    injectable for tests; times inside the token are checked against the real clock.

    A verified token is remembered until it expires (at most CACHE_SIZE of them), so a client
    that sends the same token on every request pays for the signature check once. With a JWKS,
    no longer than `jwt_jwks_max_age_s` either: a key removed from it stops its tokens then.
    """

    CACHE_SIZE = 10_000

    def __init__(
        self,
        config: AuthConfig,
        *,
        fetch: Fetch = _fetch_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._jwks = None if config.is_hmac else _Jwks(config, fetch, clock)
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> (who, until clock)

    def verify(self, token: str) -> Principal:
        """Check signature, algorithm, exp/nbf/iss/aud and claims; blocking on a JWKS reload."""
        if (known := self._cached(token)) is not None:
            return known
        header = self._header(token)
        return self._remember(token, self._decode(token, self._key(header)))

    async def averify(self, token: str) -> Principal:
        """verify() for async handlers: a JWKS reload (file or URL) runs in a thread."""
        if (known := self._cached(token)) is not None:
            return known
        header = self._header(token)
        if self._jwks is not None and self._jwks.needs_reload(header.get("kid")):
            await asyncio.to_thread(self._jwks.reload)
        return self._remember(token, self._decode(token, self._key(header)))

    def _cached(self, token: str) -> Principal | None:
        found = self._verified.get(token)
        if found is None:
            return None
        principal, until = found
        expired = principal.expires_at is None or (
            time.time() > principal.expires_at + self.config.jwt_leeway_s
        )
        if expired or self._clock() >= until:
            del self._verified[token]
            return None  # verified again: "expired", or against the JWKS as it is now
        return principal

    def _remember(self, token: str, principal: Principal) -> Principal:
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()  # simple and bounded; a miss only costs one verification
        until = math.inf if self._jwks is None else self._clock() + self.config.jwt_jwks_max_age_s
        self._verified[token] = (principal, until)
        return principal

    def authenticate(self, token: str | None) -> Principal:
        """verify() for a token that may be absent: dev mode lets that through as admin."""
        if token is None:
            if self.config.dev_mode:
                return Principal.dev_principal()
            raise Unauthorized("a bearer token is required", error=None)
        return self.verify(token)

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if alg != self.config.jwt_algorithm:
            raise Unauthorized(
                f"token algorithm {alg!r} is not the configured {self.config.jwt_algorithm}"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthorized("the token's `kid` is not a string")
        return header

    def _key(self, header: Mapping[str, Any]) -> Any:
        if self._jwks is None:
            secret = self.config.jwt_secret_key
            if secret is None:  # dev mode without a secret: tokens cannot be checked
                raise Unauthorized("this server has no JWT_SECRET_KEY: tokens cannot be verified")
            return secret.get_secret_value().encode()
        return self._jwks.key(header.get("kid"))

    def _decode(self, token: str, key: Any) -> Principal:
        config = self.config
        required = ["exp", "sub"]
        required += ["iss"] if config.jwt_issuer else []
        required += ["aud"] if config.jwt_audience else []
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[config.jwt_algorithm],
                audience=config.jwt_audience,
                issuer=config.jwt_issuer,
                leeway=config.jwt_leeway_s,
                options={
                    "require": required,
                    "verify_aud": config.jwt_audience is not None,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is not meant for this service (aud)") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token comes from an untrusted issuer (iss)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token lacks the required claim {exc.claim!r}") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return _principal(claims)


def _grants(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name, [ANY])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Unauthorized(f"the token's `{name}` claim must be a list of ids or names")
    return tuple(value)


def _principal(claims: Mapping[str, Any]) -> Principal:
    """The Principal a verified token's claims describe (tenant and role are required)."""
    subject, tenant, role = claims.get("sub"), claims.get("tenant"), claims.get("role")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the token's `sub` claim must be a non-empty string")
    if not isinstance(tenant, str) or not is_valid_tenant_id(tenant):
        raise Unauthorized("the token lacks a valid `tenant` claim")
    if role not in ROLES:
        raise Unauthorized(f"the token's `role` claim must be one of {', '.join(ROLES)}")
    jti = claims.get("jti")
    return Principal(
        subject=subject,
        tenant_id=tenant,
        role=cast(Role, role),
        streams=_grants(claims, "streams"),
        subscriptions=_grants(claims, "subscriptions"),
        token_id=jti if isinstance(jti, str) else None,
        expires_at=float(claims["exp"]),
    )


def mint_token(
    config: AuthConfig,
    tenant: str,
    role: Role,
    subject: str,
    ttl_s: float,
    streams: Iterable[str] = (ANY,),
    subscriptions: Iterable[str] = (ANY,),
    *,
    private_key_pem: str | bytes | None = None,
    kid: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token for `tenant`/`role`, valid `ttl_s` seconds, with iss/aud from config.

    HS* signs with JWT_SECRET_KEY; RS*/ES* need the private key PEM (and usually the `kid`
    its public half has in the JWKS; default: the key's RFC 7638 thumbprint).
    """
    if not is_valid_tenant_id(tenant):
        raise InvalidInput(f"tenant {tenant!r} is not a valid tenant id")
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not subject:
        raise InvalidInput("subject must not be empty")
    if not ttl_s > 0:
        raise InvalidInput("ttl_s must be positive")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant": tenant,
        "role": role,
        "streams": list(streams),
        "subscriptions": list(subscriptions),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_s),
        "jti": uuid.uuid4().hex,
    }
    if config.jwt_issuer:
        claims["iss"] = config.jwt_issuer
    if config.jwt_audience:
        claims["aud"] = config.jwt_audience
    if config.is_hmac:
        if config.jwt_secret_key is None:
            raise InvalidInput("minting HS tokens needs JWT_SECRET_KEY")
        key: Any = config.jwt_secret_key.get_secret_value().encode()
        headers = {"kid": kid} if kid else None
    else:
        if private_key_pem is None:
            raise InvalidInput(f"minting {config.jwt_algorithm} tokens needs a private key PEM")
        key = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        headers = {"kid": kid or str(public_jwk(key, config.jwt_algorithm)["kid"])}
    return jwt.encode(claims, key, algorithm=config.jwt_algorithm, headers=headers)


def public_jwk(key_pem: str | bytes, algorithm: str, kid: str | None = None) -> dict[str, str]:
    """The public JWK (for a JWKS file) of an RSA/EC private or public key PEM; `kid`
    defaults to the RFC 7638 thumbprint, which is what mint_token puts in the header."""
    data = key_pem.encode() if isinstance(key_pem, str) else key_pem
    loaded: Any = (
        load_pem_private_key(data, password=None)
        if b"PRIVATE" in data
        else load_pem_public_key(data)
    )
    public = loaded.public_key() if hasattr(loaded, "public_key") else loaded
    if isinstance(public, rsa.RSAPublicKey):
        jwk = cast(dict[str, str], RSAAlgorithm.to_jwk(public, as_dict=True))
        members: tuple[str, ...] = ("e", "kty", "n")
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = cast(dict[str, str], ECAlgorithm.to_jwk(public, as_dict=True))
        members = ("crv", "kty", "x", "y")
    else:
        raise InvalidInput("only RSA and EC keys can be published in a JWKS")
    jwk = {**jwk, "use": "sig", "alg": algorithm}
    if kid is None:
        canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).digest()
        kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    jwk["kid"] = kid
    return jwk
