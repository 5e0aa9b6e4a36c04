"""Authorization: what each role may do, which tenant a call acts on, what a client may set.

Order in a route: take the tenant from the token (`same_tenant`), load the resource scoped to
it (the services answer 404 for another tenant's, so existence never leaks), then `authorize`
the action on it (403 inside the caller's own tenant).

>>> p = Principal(subject="svc", tenant_id="acme", role="publisher", streams=("orders",))
>>> authorize(p, Action.EVENT_PUBLISH, stream="orders")
>>> authorize(p, Action.STREAM_DELETE, stream="orders")
Traceback (most recent call last):
...
cluster.errors.Forbidden: role 'publisher' may not stream.delete (needs admin)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any

from cluster.errors import Forbidden
from cluster.security.principal import ROLES, Principal, Role

__all__ = [
    "PERMISSIONS",
    "SERVER_OWNED_FIELDS",
    "Action",
    "authorize",
    "roles_for",
    "same_tenant",
    "strip_client_fields",
]


class Action(StrEnum):
    STREAM_CREATE = "stream.create"
    STREAM_UPDATE = "stream.update"
    STREAM_DELETE = "stream.delete"
    STREAM_READ = "stream.read"  # metadata and metrics, not event data
    EVENT_PUBLISH = "event.publish"
    EVENT_READ = "event.read"  # event data: reads, WebSocket tails
    SUBSCRIPTION_MANAGE = "subscription.manage"
    SUBSCRIPTION_READ = "subscription.read"
    PIPELINE_MANAGE = "pipeline.manage"
    PIPELINE_READ = "pipeline.read"  # status and results
    ADMIN = "admin"  # tenant-wide settings: quotas, keys, tokens


_VIEWER = {Action.STREAM_READ, Action.SUBSCRIPTION_READ, Action.PIPELINE_READ}
# Which roles may do what. Grants (streams, subscriptions in the token) narrow it further.
PERMISSIONS: Mapping[Role, frozenset[Action]] = {
    "admin": frozenset(Action),
    "publisher": frozenset({*_VIEWER, Action.EVENT_PUBLISH}),
    "consumer": frozenset({*_VIEWER, Action.EVENT_READ, Action.SUBSCRIPTION_MANAGE}),
    "viewer": frozenset(_VIEWER),
}


def roles_for(action: Action) -> tuple[Role, ...]:
    """Roles allowed `action`, for messages and docs.

    >>> roles_for(Action.EVENT_READ)
    ('admin', 'consumer')
    """
    return tuple(role for role in ROLES if action in PERMISSIONS[role])


def _ids(ref: str | Collection[str] | None) -> tuple[str, ...]:
    if ref is None:
        return ()
    return (ref,) if isinstance(ref, str) else tuple(ref)


def authorize(
    principal: Principal,
    action: Action,
    stream: str | Collection[str] | None = None,
    subscription: str | Collection[str] | None = None,
) -> None:
    """Raise Forbidden unless the role allows `action` and the grants cover the resource.

    `stream` / `subscription` are one identifier or several (id and name): a grant naming
    any of them matches. Leave them None for calls on no single resource (e.g. listing; then
    filter the listing with `principal.grants_stream(id, name)`).
    """
    if action not in PERMISSIONS[principal.role]:
        raise Forbidden(
            f"role {principal.role!r} may not {action.value} "
            f"(needs {' or '.join(roles_for(action))})"
        )
    streams, subscriptions = _ids(stream), _ids(subscription)
    if streams and not principal.grants_stream(*streams):
        raise Forbidden(f"the token does not grant access to stream {streams[0]!r}")
    if subscriptions and not principal.grants_subscription(*subscriptions):
        raise Forbidden(f"the token does not grant access to subscription {subscriptions[0]!r}")


def same_tenant(principal: Principal, named_tenant: str | None) -> str:
    """The tenant a call acts on: the token's. A body/path/query naming another is a 403.

    Returns the tenant to use, so a route writes `tenant = same_tenant(p, body.tenant_id)`.
    In dev mode (no token) the named tenant is taken as given.

    >>> same_tenant(Principal(subject="a", tenant_id="acme", role="viewer"), None)
    'acme'
    """
    if principal.dev:
        return named_tenant or principal.tenant_id
    if named_tenant is not None and named_tenant != principal.tenant_id:
        raise Forbidden(
            f"tenant_id {named_tenant!r} in the request is not the token's tenant "
            f"{principal.tenant_id!r}: a token acts for its own tenant only (omit tenant_id)"
        )
    return principal.tenant_id


# Set by the server from the token and its own records, never by a client.
SERVER_OWNED_FIELDS = frozenset(
    {
        "tenant_id",
        "tenant",
        "created_by",
        "created_at",
        "updated_at",
        "updated_by",
        "owner",
        "kafka_topic",
        "consumer_group",
        "transactional_id",
        "dead_letter_topic",
        "internal_id",
        "job_id",
        "key_version",
    }
)


def strip_client_fields(
    body: Mapping[str, Any],
    allowed: Collection[str],
    server_owned: Collection[str] = SERVER_OWNED_FIELDS,
) -> dict[str, Any]:
    """A copy of `body` with only `allowed` keys, minus server-owned ones (ignored, never stored).

    Routes: check `same_tenant(p, body.get("tenant_id"))` first (naming another tenant is a
    403, not something to ignore), then strip, then add the server's values:

        tenant = same_tenant(p, raw.get("tenant_id"))
        clean = strip_client_fields(raw, StreamConfig.model_fields)
        record = {**clean, "tenant_id": tenant, "created_by": p.subject}

    >>> strip_client_fields({"name": "x", "created_by": "eve", "junk": 1}, {"name", "created_by"})
    {'name': 'x'}
    """
    return {k: v for k, v in body.items() if k in allowed and k not in server_owned}
