"""/api/v1/events: publish one event, a batch (JSON, NDJSON or Arrow IPC), or an Arrow frame as
Arrow-batched records (`/arrow`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from cluster.errors import InvalidInput, UnsupportedMediaType
from cluster.security import Action, Principal
from cluster.services.publishing import ArrowReceipt, BatchReceipt
from serve.auth import Caller, authorize_stream, body_tenant
from serve.body import read_body, read_json_object, validate
from serve.codecs import (
    ARROW_TYPES,
    NDJSON_TYPES,
    arrow_table,
    media_type,
    parse_batch,
    validate_events,
)
from serve.deps import Svc
from serve.models import (
    PublishRequest,
    PublishResponse,
    Who,
    batch_body_schema,
    publish_body_schema,
)

router = APIRouter(prefix="/api/v1/events", tags=["events"])
JSON = "application/json"
Id = Annotated[str | None, Query(min_length=1, max_length=128)]


@router.post(
    "",
    status_code=201,
    response_model=PublishResponse,
    response_description="Published: the broker acknowledged the event.",
    responses={
        200: {
            "model": PublishResponse,
            "description": "A duplicate: this event id was published before, and this is where "
            "it landed (status `duplicate`).",
        }
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": publish_body_schema()}},
        }
    },
)
async def publish_event(request: Request, svc: Svc, caller: Caller) -> JSONResponse:
    """Publish one event; answers after the broker acknowledged it, with partition and offset."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    tenant = body_tenant(caller, doc)
    body = validate(PublishRequest, {**doc, "tenant_id": tenant, "user_id": _user(doc, caller)})
    await authorize_stream(svc, caller, Action.EVENT_PUBLISH, body.stream_id, tenant)
    await svc.quotas.charge_publish(tenant, 1, request.state.body_bytes)
    # PublishRequest is an EventIn: published as validated, not rebuilt and validated again.
    receipt = await svc.publishing.publish_one(body, body.stream_id, body.tenant_id, body.user_id)
    answer = PublishResponse(**receipt.model_dump(exclude={"index"}))
    status = 200 if receipt.status == "duplicate" else 201
    return JSONResponse(answer.model_dump(), status_code=status)


@router.post(
    "/batch",
    response_model=BatchReceipt,
    response_description="Every event was published (or was a duplicate).",
    responses={
        207: {
            "model": BatchReceipt,
            "description": "Some events failed at the broker; see each status.",
        }
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": batch_body_schema()},
                **{kind: {"schema": {"type": "string"}} for kind in NDJSON_TYPES},
                **{
                    kind: {"schema": {"type": "string", "format": "binary"}} for kind in ARROW_TYPES
                },
            },
        }
    },
)
async def publish_batch(
    request: Request,
    svc: Svc,
    caller: Caller,
    stream_id: Id = None,
    tenant_id: Id = None,
    user_id: Id = None,
) -> Response:
    """Publish many events at once: all are validated first (one bad event rejects the batch),
    then each gets a status. A JSON array, NDJSON or Arrow IPC body takes stream_id (and
    optionally user_id) from the query string; a JSON object body may carry them itself. The
    tenant is the token's."""
    raw = await read_body(request, svc.bus.settings.max_body_bytes)
    body = parse_batch(raw, request.headers.get("content-type"))
    svc.publishing.check_batch_size(len(body.events))  # before validating every event
    merged = _merge_who(body.envelope, stream_id, tenant_id, user_id)
    tenant = body_tenant(caller, merged)
    who = validate(Who, {**merged, "tenant_id": tenant, "user_id": _user(merged, caller)})
    await authorize_stream(svc, caller, Action.EVENT_PUBLISH, who.stream_id, tenant)
    events = validate_events(body.events)
    await svc.quotas.charge_publish(tenant, len(events), len(raw))
    receipt = await svc.publishing.publish_events(events, who.stream_id, who.tenant_id, who.user_id)
    # pydantic-core writes the JSON: a thousand receipts are no work for the stdlib encoder
    return Response(
        receipt.model_dump_json(), status_code=207 if receipt.failed else 200, media_type=JSON
    )


@router.post(
    "/arrow",
    response_model=ArrowReceipt,
    response_description="Every Arrow-batched record was acknowledged by the broker.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {k: {"schema": {"type": "string", "format": "binary"}} for k in ARROW_TYPES},
        }
    },
)
async def publish_arrow(
    request: Request,
    svc: Svc,
    caller: Caller,
    stream_id: Annotated[str, Query(min_length=1, max_length=128)],
    tenant_id: Id = None,
    user_id: Id = None,
) -> Response:
    """Opt-in bulk path: the frame's events go out as Arrow-batched records, one Kafka record
    per partition holding that partition's events (the SDK's `publish_arrow`). Columns:
    event_type, source_capability, aggregate_id, aggregate_type, optionally event_id,
    event_time, partition_key, correlation_id, causation_id; every other column is a payload
    field. Pipelines, read-back and the live tail unpack the records; other Kafka clients see
    one Arrow IPC record per partition. Client event ids are not deduplicated."""
    if media_type(request.headers.get("content-type")) not in ARROW_TYPES:
        raise UnsupportedMediaType("send the frame as application/vnd.apache.arrow.stream")
    raw = await read_body(request, svc.bus.settings.max_body_bytes)
    table = arrow_table(raw)
    merged = _merge_who({}, stream_id, tenant_id, user_id)
    tenant = body_tenant(caller, merged)
    who = validate(Who, {**merged, "tenant_id": tenant, "user_id": _user(merged, caller)})
    await authorize_stream(svc, caller, Action.EVENT_PUBLISH, who.stream_id, tenant)
    await svc.quotas.charge_publish(tenant, table.num_rows, len(raw))
    receipt = await svc.publishing.publish_arrow(table, who.stream_id, tenant, who.user_id)
    return Response(receipt.model_dump_json(), media_type=JSON)


def _merge_who(envelope: dict[str, Any], *query: str | None) -> dict[str, Any]:
    merged = dict(envelope)
    for name, value in zip(("stream_id", "tenant_id", "user_id"), query, strict=True):
        if value is None:
            continue
        if name in merged and merged[name] != value:
            raise InvalidInput(f"{name} differs between the query string and the body")
        merged[name] = value
    return merged


def _user(doc: dict[str, Any], caller: Principal) -> Any:
    """On whose behalf: the body's user_id, else the token's subject."""
    return doc.get("user_id") or caller.subject
