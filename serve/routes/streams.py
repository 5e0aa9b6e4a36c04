"""/api/v1/streams: create, list, inspect, delete; read events back; metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from cluster.models.streams import StreamConfig, StreamRecord
from cluster.security import Action, Principal, authorize
from pipelines.envelope import MAX_OFFSET, parse_time_ms
from serve.auth import Caller, TenantQuery, body_tenant, client_fields, scope
from serve.body import read_json_object, validate
from serve.deps import Services, Svc
from serve.models import (
    CreateStreamRequest,
    EventPage,
    StreamCreated,
    StreamDeleted,
    StreamList,
    StreamMetrics,
)

router = APIRouter(prefix="/api/v1/streams", tags=["streams"])


@router.post(
    "",
    status_code=201,
    response_model=StreamCreated,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CreateStreamRequest.model_json_schema()}},
        }
    },
)
async def create_stream(request: Request, svc: Svc, caller: Caller) -> JSONResponse:
    """Create a stream and its Kafka topic `esb.<tenant>.<topic_name>` in the token's tenant."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    tenant = body_tenant(caller, doc)
    config = validate(StreamConfig, client_fields(doc))
    authorize(caller, Action.STREAM_CREATE, stream=config.stream_name)
    async with svc.quotas.creating(tenant, "streams", config.stream_name):
        made = await svc.streams.provision_stream(config, tenant, caller.subject)
    created = StreamCreated(
        stream_id=made.stream_id, kafka_topic=made.kafka_topic, warnings=made.warnings
    )
    return JSONResponse(
        created.model_dump(),
        status_code=201,
        headers={"Location": f"/api/v1/streams/{made.stream_id}"},
    )


@router.get("", response_model=StreamList)
async def list_streams(svc: Svc, caller: Caller, tenant_id: TenantQuery = None) -> StreamList:
    """The tenant's streams that the token may see."""
    authorize(caller, Action.STREAM_READ)
    records = await svc.streams.list_streams(scope(caller, tenant_id))
    granted = [r for r in records if caller.grants_stream(r.stream_id, r.stream_name)]
    return StreamList(streams=granted)


async def _stream(
    svc: Services, caller: Principal, action: Action, stream_id: str, tenant_id: str | None
) -> StreamRecord:
    """The stream if it is the caller's (else 404) and the token allows `action` on it."""
    record = await svc.streams.get_stream(stream_id, scope(caller, tenant_id))
    authorize(caller, action, stream=(record.stream_id, record.stream_name))
    return record


@router.get("/{stream_id}", response_model=StreamRecord)
async def get_stream(
    stream_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> StreamRecord:
    return await _stream(svc, caller, Action.STREAM_READ, stream_id, tenant_id)


@router.delete("/{stream_id}", response_model=StreamDeleted)
async def delete_stream(
    stream_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, str]:
    """Delete the stream and its topic (its events are gone)."""
    found = await _stream(svc, caller, Action.STREAM_DELETE, stream_id, tenant_id)
    record = await svc.streams.delete_stream(found.stream_id, found.tenant_id)
    await svc.quotas.release_slot(record.tenant_id, "streams", record.stream_name)
    return {"deleted": record.stream_id, "kafka_topic": record.kafka_topic}


@router.get("/{stream_id}/events", response_model=EventPage)
async def read_events(
    stream_id: str,
    svc: Svc,
    caller: Caller,
    tenant_id: TenantQuery = None,
    partition: Annotated[
        int | None, Query(ge=0, le=999, description="Only this partition (default: all).")
    ] = None,
    from_offset: Annotated[
        int | None, Query(ge=0, le=MAX_OFFSET, description="Start at this offset.")
    ] = None,
    from_time: Annotated[
        str | None,
        Query(
            description="Start at the first record Kafka stored at or after this time (the "
            "publish time, not the event's `time`): RFC 3339 or epoch milliseconds.",
            max_length=64,
        ),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=100_000, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, description="Events per page, at most MAX_READ_LIMIT (1000).")
    ] = 100,
) -> dict[str, Any]:
    """A page of events in partition and offset order (partition 0 first, each in offset
    order; not merged by time); pass `next_cursor` back for the next."""
    # bad input is a 422 before any lookup
    from_time_ms = None if from_time is None else parse_time_ms(from_time)
    record = await _stream(svc, caller, Action.EVENT_READ, stream_id, tenant_id)
    return await svc.consumption.read_events(
        record.stream_id,
        record.tenant_id,
        partition=partition,
        from_offset=from_offset,
        from_time_ms=from_time_ms,
        cursor=cursor,
        limit=limit,
    )


@router.get("/{stream_id}/metrics", response_model=StreamMetrics)
async def stream_metrics(
    stream_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    record = await _stream(svc, caller, Action.STREAM_READ, stream_id, tenant_id)
    return await svc.streams.get_metrics(record.stream_id, record.tenant_id)
