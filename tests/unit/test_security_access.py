"""Role table, tenant rules (403 for naming another tenant, 404 for its resources), fields."""

from __future__ import annotations

import pytest

import cluster.security as security
from cluster.security import (
    PERMISSIONS,
    ROLES,
    Action,
    Forbidden,
    Principal,
    authorize,
    same_tenant,
    strip_client_fields,
)

A = Action
# The role table as the product describes it: admin does everything; publishers write
# events; consumers read events and manage their subscriptions; viewers see metadata only.
EXPECTED: dict[Action, set[str]] = {
    A.STREAM_CREATE: {"admin"},
    A.STREAM_UPDATE: {"admin"},
    A.STREAM_DELETE: {"admin"},
    A.STREAM_READ: {"admin", "publisher", "consumer", "viewer"},
    A.EVENT_PUBLISH: {"admin", "publisher"},
    A.EVENT_READ: {"admin", "consumer"},
    A.SUBSCRIPTION_MANAGE: {"admin", "consumer"},
    A.SUBSCRIPTION_READ: {"admin", "publisher", "consumer", "viewer"},
    A.PIPELINE_MANAGE: {"admin"},
    A.PIPELINE_READ: {"admin", "publisher", "consumer", "viewer"},
    A.ADMIN: {"admin"},
}


def who(role: str = "admin", tenant: str = "acme", **grants: tuple[str, ...]) -> Principal:
    return Principal(subject="u", tenant_id=tenant, role=role, **grants)  # type: ignore[arg-type]


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", ROLES)
def test_role_table(role: str, action: Action) -> None:
    allowed = role in EXPECTED[action]
    assert (action in PERMISSIONS[role]) is allowed  # type: ignore[index]
    if allowed:
        authorize(who(role), action)
    else:
        with pytest.raises(Forbidden, match=f"role '{role}' may not {action.value}"):
            authorize(who(role), action)


def test_table_covers_every_action() -> None:
    assert set(EXPECTED) == set(Action)


def test_stream_grants_match_id_or_name() -> None:
    consumer = who("consumer", streams=("orders",), subscriptions=("sub-1",))
    authorize(consumer, A.EVENT_READ, stream="orders")
    authorize(consumer, A.EVENT_READ, stream=("s-42", "orders"))
    with pytest.raises(Forbidden, match="stream 's-43'"):
        authorize(consumer, A.EVENT_READ, stream=("s-43", "payments"))
    authorize(consumer, A.SUBSCRIPTION_MANAGE, subscription="sub-1")
    with pytest.raises(Forbidden, match="subscription"):
        authorize(consumer, A.SUBSCRIPTION_MANAGE, subscription="sub-2")


def test_wildcard_grant_and_role_checked_first() -> None:
    authorize(who("publisher"), A.EVENT_PUBLISH, stream="anything")
    with pytest.raises(Forbidden, match="role"):  # the role fails before the grant is looked at
        authorize(who("viewer", streams=("orders",)), A.EVENT_PUBLISH, stream="orders")


def test_same_tenant() -> None:
    p = who("publisher")
    assert same_tenant(p, None) == "acme"
    assert same_tenant(p, "acme") == "acme"
    with pytest.raises(Forbidden) as caught:
        same_tenant(p, "globex")
    assert caught.value.status == 403
    assert "'globex'" in caught.value.detail and "'acme'" in caught.value.detail


def test_dev_principal_acts_for_the_named_tenant() -> None:
    dev = Principal.dev_principal()
    assert same_tenant(dev, "globex") == "globex"
    assert same_tenant(dev, None) == "dev"


def test_strip_client_fields() -> None:
    body = {
        "stream_name": "orders",
        "partitions": 3,
        "tenant_id": "acme",
        "created_by": "mallory",
        "kafka_topic": "esb.globex.orders",
        "surprise": True,
    }
    allowed = {"stream_name", "partitions", "tenant_id", "created_by", "kafka_topic"}
    assert strip_client_fields(body, allowed) == {"stream_name": "orders", "partitions": 3}
    assert body["created_by"] == "mallory"  # a copy: the input is untouched


def test_public_api_is_all() -> None:
    public = {name for name in dir(security) if not name.startswith("_")}
    modules = {
        "access",
        "config",
        "encryption",
        "errors",
        "event_crypto",
        "keystore",
        "principal",
        "quotas",
        "tls",
        "tokens",
        "webhooks",
    }
    assert public - modules == set(security.__all__)
