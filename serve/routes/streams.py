"""/api/v1/streams: create, list, inspect, delete; read events back; metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from cluster.errors import InvalidInput
from cluster.models import StreamConfig, StreamRecord
from serve.body import read_json_object, validate
from serve.deps import Services, services
from serve.models import CreateStreamRequest, StreamCreated, StreamList

router = APIRouter(prefix="/api/v1/streams", tags=["streams"])
Svc = Annotated[Services, Depends(services)]
TenantQuery = Annotated[
    str | None, Query(max_length=64, description="Only this tenant's streams; ids or names.")
]


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
async def create_stream(request: Request, svc: Svc) -> JSONResponse:
    """Create a stream and its Kafka topic `esb.<tenant>.<topic_name>`."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    body = validate(CreateStreamRequest, doc)
    config = StreamConfig(**body.model_dump(exclude={"tenant_id", "created_by"}))
    made = await svc.streams.provision_stream(config, body.tenant_id, body.created_by)
    created = StreamCreated(
        stream_id=made.stream_id, kafka_topic=made.kafka_topic, warnings=made.warnings
    )
    return JSONResponse(
        created.model_dump(),
        status_code=201,
        headers={"Location": f"/api/v1/streams/{made.stream_id}"},
    )


@router.get("", response_model=StreamList)
async def list_streams(svc: Svc, tenant_id: TenantQuery = None) -> StreamList:
    return StreamList(streams=await svc.streams.list_streams(tenant_id))


@router.get("/{stream_id}", response_model=StreamRecord)
async def get_stream(stream_id: str, svc: Svc, tenant_id: TenantQuery = None) -> StreamRecord:
    return await svc.streams.get_stream(stream_id, tenant_id)


@router.delete("/{stream_id}")
async def delete_stream(stream_id: str, svc: Svc, tenant_id: TenantQuery = None) -> dict[str, str]:
    """Delete the stream and its topic (its events are gone)."""
    record = await svc.streams.delete_stream(stream_id, tenant_id)
    return {"deleted": record.stream_id, "kafka_topic": record.kafka_topic}


@router.get("/{stream_id}/events")
async def read_events(
    stream_id: str,
    svc: Svc,
    tenant_id: TenantQuery = None,
    partition: Annotated[int | None, Query(ge=0)] = None,
    from_offset: Annotated[int | None, Query(ge=0)] = None,
    from_time: Annotated[
        str | None, Query(description="RFC 3339 or epoch milliseconds", max_length=64)
    ] = None,
    cursor: Annotated[str | None, Query(max_length=100_000)] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> dict[str, Any]:
    """A page of events in partition and offset order; pass `next_cursor` back for the next."""
    return await svc.consumption.read_events(
        stream_id,
        tenant_id,
        partition=partition,
        from_offset=from_offset,
        from_time_ms=_epoch_ms(from_time),
        cursor=cursor,
        limit=limit,
    )


@router.get("/{stream_id}/metrics")
async def stream_metrics(stream_id: str, svc: Svc, tenant_id: TenantQuery = None) -> dict[str, Any]:
    return await svc.streams.get_metrics(stream_id, tenant_id)


def _epoch_ms(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"from_time {value!r} is neither RFC 3339 nor epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput("from_time needs a timezone offset, e.g. 2026-01-01T12:00:00Z")
    return int(moment.timestamp() * 1000)
