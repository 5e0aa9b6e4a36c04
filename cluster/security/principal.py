"""Who is calling: the verified identity a token stands for.

A `Principal` is built only by the token verifier (or `Principal.dev` in dev mode); routes
take the tenant from it, never from the request.

>>> p = Principal(subject="alice", tenant_id="acme", role="consumer", streams=("orders",))
>>> p.grants_stream("orders"), p.grants_stream("payments"), p.grants_subscription("any")
(True, False, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from pipelines.envelope import IDENTIFIER

Role = Literal["admin", "publisher", "consumer", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
ANY = "*"


def is_valid_tenant_id(tenant: str) -> bool:
    """True when `tenant` is safe as a namespace component.

    >>> is_valid_tenant_id("acme"), is_valid_tenant_id("a.b"), is_valid_tenant_id("x:*")
    (True, False, False)
    """
    return bool(IDENTIFIER.fullmatch(tenant))


def _matches(grants: tuple[str, ...], identifiers: Iterable[str | None]) -> bool:
    if ANY in grants:
        return True
    return any(ident is not None and ident in grants for ident in identifiers)


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller: subject, tenant, role, and the streams/subscriptions it may touch.

    Grants hold stream (or subscription) ids or names; `"*"` means all of the tenant's.
    `dev` is True only for the unauthenticated dev-mode principal, which sees every tenant.
    """

    subject: str
    tenant_id: str
    role: Role
    streams: tuple[str, ...] = (ANY,)
    subscriptions: tuple[str, ...] = (ANY,)
    token_id: str | None = None
    expires_at: float | None = None
    dev: bool = False

    def grants_stream(self, *identifiers: str | None) -> bool:
        """True when a grant names the stream by any of its identifiers (id, name)."""
        return _matches(self.streams, identifiers)

    def grants_subscription(self, *identifiers: str | None) -> bool:
        """True when a grant names the subscription by any of its identifiers (id, name)."""
        return _matches(self.subscriptions, identifiers)

    @classmethod
    def dev_principal(cls, tenant_id: str = "dev") -> Principal:
        """The caller in dev mode without a token: admin, every tenant. Never in production."""
        return cls(subject="dev-mode", tenant_id=tenant_id, role="admin", dev=True)
