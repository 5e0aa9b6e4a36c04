"""/api/v1/schemas: the seed's schema API, a thin face over the Confluent-compatible registry
(serve.routes.schema_registry): a schema_name is a registry subject, tagged with the event
type it describes. Also PUT /api/v1/streams/{stream_id}/schemas: bind event types to schemas."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cluster.models.streams import StreamRecord
from cluster.security import Action, authorize
from cluster.security.access import same_tenant
from serve.auth import Caller, authorize_stream
from serve.body import read_json_object, validate
from serve.deps import Svc
from serve.registry_models import (
    EventSchemaCreated,
    EventSchemaIn,
    EventSchemaList,
    EventSchemaOut,
    StreamSchemasIn,
)

router = APIRouter(prefix="/api/v1", tags=["schemas"])


@router.post(
    "/schemas",
    status_code=201,
    response_model=EventSchemaCreated,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EventSchemaIn.model_json_schema()}},
        }
    },
)
async def create_schema(request: Request, svc: Svc, caller: Caller) -> JSONResponse:
    """Register a schema for an event type (a new version when the name exists; the same id
    when it is identical to one registered before)."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    body = validate(EventSchemaIn, doc)
    authorize(caller, Action.EVENT_PUBLISH)
    tenant = same_tenant(caller, None)
    found = await svc.schemas.register_for_event(
        tenant, body.schema_name, body.event_type, body.schema_type, body.schema_
    )
    created = EventSchemaCreated(
        schema_id=found.id,
        version=found.version,
        schema_name=body.schema_name,
        event_type=body.event_type,
        schema_type=body.schema_type,
    )
    return JSONResponse(
        created.model_dump(), status_code=201, headers={"Location": f"/api/v1/schemas/{found.id}"}
    )


@router.get("/schemas", response_model=EventSchemaList)
async def list_schemas(svc: Svc, caller: Caller) -> EventSchemaList:
    """Every version of the tenant's schemas (deleted ones left out), by schema id."""
    authorize(caller, Action.STREAM_READ)
    tenant = same_tenant(caller, None)
    kinds = await svc.schemas.event_types(tenant)
    pairs = await svc.schemas.schemas_by_id(tenant)
    ids = sorted({ref.id for _, ref in pairs})
    types = {s.id: s.schema_type for s in await svc.schemas.stored_schemas(tenant, ids)}
    return EventSchemaList(
        schemas=[
            EventSchemaCreated(
                schema_id=ref.id,
                version=ref.version,
                schema_name=subject,
                event_type=kinds.get(subject, ""),
                schema_type="json" if types[ref.id] == "JSON" else "avro",
            )
            for subject, ref in pairs
        ]
    )


@router.get("/schemas/{schema_id}", response_model=EventSchemaOut)
async def get_schema(schema_id: int, svc: Svc, caller: Caller) -> JSONResponse:
    authorize(caller, Action.STREAM_READ)
    tenant = same_tenant(caller, None)
    stored = await svc.schemas.schema(tenant, schema_id)
    pairs = [(s, r) for s, r in await svc.schemas.schemas_by_id(tenant) if r.id == schema_id]
    subject, ref = pairs[-1] if pairs else ("", None)
    kinds = await svc.schemas.event_types(tenant)
    answer = EventSchemaOut(
        schema_id=stored.id,
        version=ref.version if ref else 0,
        schema_name=subject,
        event_type=kinds.get(subject, ""),
        schema_type="json" if stored.schema_type == "JSON" else "avro",
        schema_=orjson.loads(stored.schema_text),
    )
    return JSONResponse(answer.model_dump(by_alias=True))


@router.put("/streams/{stream_id}/schemas", response_model=StreamRecord, tags=["streams"])
async def bind_stream_schemas(
    stream_id: str, request: Request, svc: Svc, caller: Caller
) -> StreamRecord:
    """Bind event types to schemas: publishing validates each event of a bound type."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    body = validate(StreamSchemasIn, doc)
    tenant = same_tenant(caller, None)
    await authorize_stream(svc, caller, Action.STREAM_UPDATE, stream_id, tenant)
    return await svc.streams.bind_schemas(stream_id, tenant, body.schemas)
