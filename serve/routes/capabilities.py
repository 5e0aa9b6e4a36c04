"""/api/v1/capabilities and /api/v1/catalog/events: what each capability publishes and
consumes, and per event type its schema, publishers and subscribers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from cluster.models.capabilities import CapabilityConfig, CapabilityRecord, CatalogEntry
from cluster.security import Action, authorize
from cluster.security.access import same_tenant
from serve.auth import Caller
from serve.body import read_json_object, validate
from serve.deps import Svc

router = APIRouter(prefix="/api/v1", tags=["capabilities"])


class CapabilityList(BaseModel):
    capabilities: list[CapabilityRecord]


class EventCatalog(BaseModel):
    event_types: list[CatalogEntry]


@router.post(
    "/capabilities",
    status_code=201,
    response_model=CapabilityRecord,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CapabilityConfig.model_json_schema()}},
        }
    },
)
async def register_capability(request: Request, svc: Svc, caller: Caller) -> JSONResponse:
    """Register (or update) a capability; its published types' schemas are bound on its stream."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    config = validate(CapabilityConfig, doc)
    authorize(caller, Action.STREAM_UPDATE, stream=config.stream)
    record = await svc.capabilities.register(config, same_tenant(caller, None))
    return JSONResponse(record.model_dump(), status_code=201)


@router.get("/capabilities", response_model=CapabilityList)
async def list_capabilities(svc: Svc, caller: Caller) -> CapabilityList:
    authorize(caller, Action.STREAM_READ)
    tenant = same_tenant(caller, None)
    return CapabilityList(capabilities=await svc.capabilities.list_capabilities(tenant))


@router.get("/capabilities/{name}", response_model=CapabilityRecord)
async def get_capability(name: str, svc: Svc, caller: Caller) -> CapabilityRecord:
    authorize(caller, Action.STREAM_READ)
    return await svc.capabilities.get(same_tenant(caller, None), name)


@router.get("/catalog/events", response_model=EventCatalog)
async def event_catalog(svc: Svc, caller: Caller) -> EventCatalog:
    """Per event type: its schema id, the streams it is published to, who publishes, who
    subscribes."""
    authorize(caller, Action.STREAM_READ)
    return EventCatalog(event_types=await svc.capabilities.catalog(same_tenant(caller, None)))
