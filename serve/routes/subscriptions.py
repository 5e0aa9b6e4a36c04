"""/api/v1/subscriptions: create, list, inspect, pause, resume and cancel subscriptions, read and
replay their dead letters; /ws/subscriptions/{id}: status and deliveries as they happen."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import Field

from cluster import naming
from cluster.errors import EsbError
from cluster.models.subscriptions import SubscriptionConfig, SubscriptionRecord
from cluster.security import Action, Principal, authorize
from pipelines.envelope import MAX_OFFSET
from serve.auth import (
    Caller,
    TenantQuery,
    authenticate,
    authorize_stream,
    body_tenant,
    client_fields,
    scope,
)
from serve.body import read_json_object, validate
from serve.deps import Services, Svc, services
from serve.models import (
    DeadLetterPage,
    DeadLettersReplayed,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionStateChanged,
    SubscriptionStatus,
    SubscriptionView,
)
from serve.websocket import redis_messages, refuse, relay

router = APIRouter(tags=["subscriptions"])


class CreateSubscription(SubscriptionConfig):
    """The subscription belongs to the token's tenant; `created_by` is the token's subject."""

    tenant_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The token's tenant, or omit it."
    )


@router.post(
    "/api/v1/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CreateSubscription.model_json_schema()}},
        }
    },
)
async def create_subscription(request: Request, svc: Svc, caller: Caller) -> JSONResponse:
    """Create a subscription and start its dispatcher. The answer carries the webhook signing
    secret: it is shown this once."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    tenant = body_tenant(caller, doc)
    config = validate(SubscriptionConfig, client_fields(doc))
    authorize(caller, Action.SUBSCRIPTION_MANAGE, subscription=config.subscription_name)
    await authorize_stream(svc, caller, Action.EVENT_READ, config.stream_id, tenant)
    if config.forward_to is not None:  # forwarding publishes into the other stream
        await authorize_stream(svc, caller, Action.EVENT_PUBLISH, config.forward_to, tenant)
    async with svc.quotas.creating(tenant, "subscriptions", _slot(config.consumer_group_id)):
        record, secret = await svc.subscriptions.create_subscription(config, tenant, caller.subject)
    return JSONResponse(
        {**record.public(), "state": "active", "secret": secret},
        status_code=201,
        headers={"Location": f"/api/v1/subscriptions/{record.subscription_id}"},
    )


def _slot(consumer_group_id: str) -> str:
    """What a subscription counts as in the quota: its group, unique in the tenant."""
    return f"group:{consumer_group_id}"


@router.get("/api/v1/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(
    svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """The tenant's subscriptions that the token may see."""
    authorize(caller, Action.SUBSCRIPTION_READ)
    found = await svc.subscriptions.list_subscriptions(scope(caller, tenant_id))
    return {
        "subscriptions": [
            s
            for s in found
            if caller.grants_subscription(s["subscription_id"], s["config"]["subscription_name"])
        ]
    }


async def _subscription(
    svc: Services,
    caller: Principal,
    action: Action,
    subscription_id: str,
    tenant_id: str | None,
) -> SubscriptionRecord:
    """The subscription if it is the caller's (else 404) and the token allows `action` on it."""
    record = await svc.subscriptions.get_record(subscription_id, scope(caller, tenant_id))
    names = (record.subscription_id, record.config.subscription_name)
    authorize(caller, action, subscription=names)
    return record


async def _change_state(
    svc: Services,
    caller: Principal,
    subscription_id: str,
    tenant_id: str | None,
    change: Literal["pause", "resume", "cancel"],
) -> tuple[SubscriptionRecord, dict[str, Any]]:
    """Pause, resume or cancel the caller's subscription; the record and the answer."""
    manage = Action.SUBSCRIPTION_MANAGE
    record = await _subscription(svc, caller, manage, subscription_id, tenant_id)
    state = await getattr(svc.subscriptions, change)(record.subscription_id, record.tenant_id)
    return record, {"subscription_id": subscription_id, "state": state}


@router.get("/api/v1/subscriptions/{subscription_id}", response_model=SubscriptionView)
async def get_subscription(
    subscription_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    read = Action.SUBSCRIPTION_READ
    return (await _subscription(svc, caller, read, subscription_id, tenant_id)).public()


@router.get("/api/v1/subscriptions/{subscription_id}/status", response_model=SubscriptionStatus)
async def subscription_status(
    subscription_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """State, lag per partition, delivered / retried / dead-lettered counts, the last error."""
    record = await _subscription(svc, caller, Action.SUBSCRIPTION_READ, subscription_id, tenant_id)
    return await svc.subscriptions.status(record.subscription_id, record.tenant_id)


@router.delete("/api/v1/subscriptions/{subscription_id}", response_model=SubscriptionStateChanged)
async def cancel_subscription(
    subscription_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    record, answer = await _change_state(svc, caller, subscription_id, tenant_id, "cancel")
    slot = _slot(record.config.consumer_group_id)
    await svc.quotas.release_slot(record.tenant_id, "subscriptions", slot)
    return answer


@router.post(
    "/api/v1/subscriptions/{subscription_id}/pause", response_model=SubscriptionStateChanged
)
async def pause_subscription(
    subscription_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    return (await _change_state(svc, caller, subscription_id, tenant_id, "pause"))[1]


@router.post(
    "/api/v1/subscriptions/{subscription_id}/resume", response_model=SubscriptionStateChanged
)
async def resume_subscription(
    subscription_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """Resume a paused subscription, or re-enable one a receiver disabled with 410."""
    return (await _change_state(svc, caller, subscription_id, tenant_id, "resume"))[1]


@router.get("/api/v1/subscriptions/{subscription_id}/dlq", response_model=DeadLetterPage)
async def subscription_dead_letters(
    subscription_id: str,
    svc: Svc,
    caller: Caller,
    tenant_id: TenantQuery = None,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Dead-letter topic offset to start at.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Dead letters per page.")] = 100,
) -> dict[str, Any]:
    """Dead letters oldest first: the event, the error, attempts and timestamps. Offsets are
    the dead-letter topic's; it is written in Kafka transactions, whose commit markers take an
    offset each, so offsets skip numbers: page with `next_offset`, not offset + 1."""
    record = await _subscription(svc, caller, Action.SUBSCRIPTION_READ, subscription_id, tenant_id)
    return await svc.subscriptions.dead_letters(
        record.subscription_id, record.tenant_id, offset=offset, limit=limit
    )


@router.post(
    "/api/v1/subscriptions/{subscription_id}/dlq/replay", response_model=DeadLettersReplayed
)
async def replay_dead_letters(
    subscription_id: str,
    svc: Svc,
    caller: Caller,
    tenant_id: TenantQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    """Send the dead letters not replayed yet again, through the subscription's dispatcher."""
    manage = Action.SUBSCRIPTION_MANAGE
    record = await _subscription(svc, caller, manage, subscription_id, tenant_id)
    return await svc.subscriptions.replay_dead_letters(
        record.subscription_id, record.tenant_id, limit=limit
    )


@router.websocket("/ws/subscriptions/{subscription_id}")
async def live_subscription(websocket: WebSocket, subscription_id: str) -> None:
    """First the status, then each cycle's deliveries (`{"type": "deliveries", "items": [...]}`)
    and state changes (`{"type": "state", ...}`) as JSON. A client more than 1,000 messages
    behind is closed with 1008; it never slows the dispatcher."""
    svc = services(websocket)
    try:
        caller = await authenticate(websocket)
        tenant = websocket.query_params.get("tenant_id")
        read = Action.SUBSCRIPTION_READ
        record = await _subscription(svc, caller, read, subscription_id, tenant)
        status = await svc.subscriptions.status(record.subscription_id, record.tenant_id)
    except EsbError as exc:
        await refuse(websocket, exc)
        return
    await websocket.accept()
    pubsub = svc.bus.redis.pubsub()
    await pubsub.subscribe(naming.sub_key(subscription_id, "live"))
    await websocket.send_text(orjson.dumps({"type": "status", **status}).decode())
    try:
        await relay(websocket, redis_messages(pubsub))
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
