"""/api/v1/subscriptions: create, list, inspect, pause, resume and cancel subscriptions, read and
replay their dead letters; /ws/subscriptions/{id}: status and deliveries as they happen."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import Field

from cluster.errors import EsbError
from cluster.subscription_models import SubscriptionConfig, sub_key
from serve.body import read_json_object, validate
from serve.deps import Services, services
from serve.websocket import redis_messages, relay

router = APIRouter(tags=["subscriptions"])
Svc = Annotated[Services, Depends(services)]
TenantQuery = Annotated[str | None, Query(max_length=64)]


class CreateSubscription(SubscriptionConfig):
    tenant_id: str = Field(min_length=1, max_length=64)
    created_by: str = Field(default="api", min_length=1, max_length=64)


@router.post(
    "/api/v1/subscriptions",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CreateSubscription.model_json_schema()}},
        }
    },
)
async def create_subscription(request: Request, svc: Svc) -> JSONResponse:
    """Create a subscription and start its dispatcher. The answer carries the webhook signing
    secret: it is shown this once."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    body = validate(CreateSubscription, doc)
    config = SubscriptionConfig.model_validate(body.model_dump(exclude={"tenant_id", "created_by"}))
    record, secret = await svc.subscriptions.create_subscription(
        config, body.tenant_id, body.created_by
    )
    return JSONResponse(
        {**record.public(), "state": "active", "secret": secret},
        status_code=201,
        headers={"Location": f"/api/v1/subscriptions/{record.subscription_id}"},
    )


@router.get("/api/v1/subscriptions")
async def list_subscriptions(svc: Svc, tenant_id: TenantQuery = None) -> dict[str, Any]:
    return {"subscriptions": await svc.subscriptions.list_subscriptions(tenant_id)}


@router.get("/api/v1/subscriptions/{subscription_id}")
async def get_subscription(
    subscription_id: str, svc: Svc, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    record = await svc.subscriptions.get_record(subscription_id, tenant_id)
    return record.public()


@router.get("/api/v1/subscriptions/{subscription_id}/status")
async def subscription_status(
    subscription_id: str, svc: Svc, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """State, lag per partition, delivered / retried / dead-lettered counts, the last error."""
    return await svc.subscriptions.status(subscription_id, tenant_id)


@router.delete("/api/v1/subscriptions/{subscription_id}")
async def cancel_subscription(
    subscription_id: str, svc: Svc, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    state = await svc.subscriptions.cancel(subscription_id, tenant_id)
    return {"subscription_id": subscription_id, "state": state}


@router.post("/api/v1/subscriptions/{subscription_id}/pause")
async def pause_subscription(
    subscription_id: str, svc: Svc, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    state = await svc.subscriptions.pause(subscription_id, tenant_id)
    return {"subscription_id": subscription_id, "state": state}


@router.post("/api/v1/subscriptions/{subscription_id}/resume")
async def resume_subscription(
    subscription_id: str, svc: Svc, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """Resume a paused subscription, or re-enable one a receiver disabled with 410."""
    state = await svc.subscriptions.resume(subscription_id, tenant_id)
    return {"subscription_id": subscription_id, "state": state}


@router.get("/api/v1/subscriptions/{subscription_id}/dlq")
async def subscription_dead_letters(
    subscription_id: str,
    svc: Svc,
    tenant_id: TenantQuery = None,
    offset: Annotated[int, Query(ge=0, description="dead-letter topic offset")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Dead letters oldest first: the event, the error, attempts and timestamps."""
    return await svc.subscriptions.dead_letters(
        subscription_id, tenant_id, offset=offset, limit=limit
    )


@router.post("/api/v1/subscriptions/{subscription_id}/dlq/replay")
async def replay_dead_letters(
    subscription_id: str,
    svc: Svc,
    tenant_id: TenantQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    """Send the dead letters not replayed yet again, through the subscription's dispatcher."""
    return await svc.subscriptions.replay_dead_letters(subscription_id, tenant_id, limit=limit)


@router.websocket("/ws/subscriptions/{subscription_id}")
async def live_subscription(websocket: WebSocket, subscription_id: str) -> None:
    """First the status, then each cycle's deliveries (`{"type": "deliveries", "items": [...]}`)
    and state changes (`{"type": "state", ...}`) as JSON. A client more than 1,000 messages
    behind is closed with 1008; it never slows the dispatcher."""
    svc = services(websocket)
    try:
        status = await svc.subscriptions.status(
            subscription_id, websocket.query_params.get("tenant_id")
        )
    except EsbError as exc:
        await websocket.close(code=1008, reason=exc.detail[:120])
        return
    await websocket.accept()
    pubsub = svc.bus.redis.pubsub()
    await pubsub.subscribe(sub_key(subscription_id, "live"))
    await websocket.send_text(orjson.dumps({"type": "status", **status}).decode())
    try:
        await relay(websocket, redis_messages(pubsub))
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
