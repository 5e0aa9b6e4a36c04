"""Who is calling: the bearer token every route but health needs, and the tenant it acts for.

Routes take `caller: Caller`, then scope lookups with `scope(caller, tenant_id)` (another
tenant's resource is then a 404 from the service) and `authorize` the action. WebSockets
call `authenticate` before accepting (browsers send `?access_token=`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from cluster.errors import InvalidInput
from cluster.security import Action, Principal, TokenVerifier, auth_config_from, authorize
from cluster.security.access import same_tenant, strip_client_fields
from cluster.security.principal import ANY
from cluster.security.tokens import bearer_token
from serve.deps import Services

# Documents the scheme in /openapi.json; the header itself is read by `caller`.
_BEARER = HTTPBearer(auto_error=False, description="A JWT: `esb tokens create --tenant T --role R`")


def verifier(conn: HTTPConnection) -> TokenVerifier:
    state = conn.app.state
    if getattr(state, "verifier", None) is None:
        state.verifier = TokenVerifier(auth_config_from(state.settings))
    found: TokenVerifier = state.verifier
    return found


async def authenticate(conn: HTTPConnection) -> Principal:
    """The verified caller, or Unauthorized (401). Dev mode lets a request without a token in."""
    token = bearer_token(conn.headers.get("authorization"), conn.query_params.get("access_token"))
    check = verifier(conn)
    return await check.averify(token) if token is not None else check.authenticate(None)


async def caller(conn: HTTPConnection, _bearer: object = Depends(_BEARER)) -> Principal:
    return await authenticate(conn)


Caller = Annotated[Principal, Depends(caller)]
# The optional `tenant_id` query parameter: it may only name the token's own tenant.
TenantQuery = Annotated[
    str | None,
    Query(max_length=64, description="Optional: the token's tenant (another is a 403)."),
]


def scope(principal: Principal, named_tenant: str | None) -> str | None:
    """The tenant a lookup is limited to: the token's (a request naming another is a 403).
    Dev mode without a token: the named tenant, or all of them."""
    if principal.dev:
        return named_tenant
    return same_tenant(principal, named_tenant)


def acting_tenant(principal: Principal, named_tenant: str | None) -> str:
    """The one tenant a call acts for: the token's (naming another is a 403); dev mode without
    a token: the named one, else the caller's."""
    return scope(principal, named_tenant) or principal.tenant_id


async def authorize_stream(
    svc: Services, principal: Principal, action: Action, stream: str, tenant: str | None
) -> None:
    """The role must allow `action`; a token naming streams must name this one (by id or
    name). The stream is looked up only for such tokens, so the common case costs nothing."""
    authorize(principal, action)
    if not principal.grants_stream(ANY):
        record = await svc.bus.streams.resolve(stream, tenant)
        authorize(principal, action, stream=(record.stream_id, record.stream_name))


def body_tenant(principal: Principal, doc: dict[str, object]) -> str:
    """The tenant a create call acts for: the token's; a body naming another is a 403."""
    named = doc.get("tenant_id")
    if named is not None and not isinstance(named, str):
        raise InvalidInput("tenant_id must be a string (or left out: the token's tenant)")
    return same_tenant(principal, named)


def client_fields(doc: dict[str, object]) -> dict[str, object]:
    """The body without fields only the server sets (tenant, created_by, ids): ignored."""
    return strip_client_fields(doc, doc.keys())
