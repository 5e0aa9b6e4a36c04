"""The event store: GET /api/v1/events/{event_id}, POST /api/v1/events/query, and event-sourced
aggregates under /api/v1/aggregates/{aggregate_type}/{aggregate_id} (append with an expected
version, history, state). The caller's tenant only; another tenant's ids answer 404."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from cluster.errors import InvalidInput
from cluster.models.event_store import (
    AggregateHistory,
    AggregateState,
    AppendRequest,
    AppendResult,
    EventQuery,
    QueryPage,
    StoredEvent,
)
from cluster.security import Action, Principal, authorize
from cluster.security.principal import ANY
from serve.auth import Caller, TenantQuery, acting_tenant, authorize_stream
from serve.body import read_json_object, validate
from serve.deps import Services, Svc

router = APIRouter(tags=["event store"])
JSON = "application/json"
M = TypeVar("M", bound=BaseModel)
Name = Annotated[str, Path(min_length=1, max_length=256)]
StreamQuery = Annotated[str | None, Query(min_length=1, max_length=128)]


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined (OpenAPI resolves no local $defs)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {JSON: {"schema": inline(schema)}}}}


async def _body(request: Request, svc: Services, model: type[M]) -> M:
    """The JSON body, read within MAX_BODY_BYTES (413 past it), validated (422 per field)."""
    return validate(model, await read_json_object(request, svc.bus.settings.max_body_bytes))


async def _check_streams(
    svc: Services, caller: Principal, action: Action, streams: list[str], tenant: str
) -> None:
    """A token limited to some streams must name them, and only them."""
    authorize(caller, action)
    if not streams and not caller.grants_stream(ANY):
        raise InvalidInput("this token is limited to some streams: name them (stream_id)")
    for stream in streams:
        await authorize_stream(svc, caller, action, stream, tenant)


@router.get("/api/v1/events/{event_id}", response_model=StoredEvent)
async def get_event(
    event_id: Annotated[str, Path(min_length=1, max_length=128)],
    svc: Svc,
    caller: Caller,
    stream_id: StreamQuery = None,
    tenant_id: TenantQuery = None,
) -> StoredEvent:
    """The event with this id as stored (decrypted for an encrypted stream), with its stream,
    partition and offset; 404 when the tenant has none (or it is not indexed yet)."""
    tenant = acting_tenant(caller, tenant_id)
    authorize(caller, Action.EVENT_READ)
    found = await svc.event_store.get_event(event_id, tenant, stream_id)
    await _check_streams(svc, caller, Action.EVENT_READ, [found.stream_id], tenant)
    return found


@router.post(
    "/api/v1/events/query", response_model=QueryPage, openapi_extra=_body_schema(EventQuery)
)
async def query_events(
    request: Request, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> QueryPage:
    """Events matching every given filter, in event-time order (ties: stream, partition,
    offset); pass `next_cursor` back as `cursor` for the next page. Every matching event comes
    exactly once across the pages, whatever is published meanwhile."""
    body = await _body(request, svc, EventQuery)
    tenant = acting_tenant(caller, tenant_id)
    await _check_streams(svc, caller, Action.EVENT_READ, body.streams, tenant)
    return await svc.event_store.query(body, tenant)


AGGREGATE = "/api/v1/aggregates/{aggregate_type}/{aggregate_id}"


@router.post(
    f"{AGGREGATE}/events",
    status_code=201,
    response_model=AppendResult,
    responses={200: {"model": AppendResult, "description": "A retry: the same versions."}},
    openapi_extra=_body_schema(AppendRequest),
)
async def append_events(
    aggregate_type: Name,
    aggregate_id: Name,
    request: Request,
    svc: Svc,
    caller: Caller,
    tenant_id: TenantQuery = None,
) -> Response:
    """Append events as the aggregate's next versions if `expected_version` holds (`any`,
    `no_stream`, `exists` or a number), all or none; 409 with `current_version` otherwise."""
    body = await _body(request, svc, AppendRequest)
    tenant = acting_tenant(caller, tenant_id)
    await _check_streams(svc, caller, Action.EVENT_PUBLISH, [body.stream_id], tenant)
    await svc.quotas.charge_publish(tenant, len(body.events), request.state.body_bytes)
    result = await svc.aggregates.append(aggregate_type, aggregate_id, body, tenant, caller.subject)
    status = 200 if result.duplicate else 201
    return Response(result.model_dump_json(), status_code=status, media_type=JSON)


@router.get(f"{AGGREGATE}/events", response_model=AggregateHistory)
async def aggregate_events(
    aggregate_type: Name,
    aggregate_id: Name,
    svc: Svc,
    caller: Caller,
    from_version: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tenant_id: TenantQuery = None,
) -> AggregateHistory:
    """The aggregate's events in version order, each with its `version`."""
    tenant = acting_tenant(caller, tenant_id)
    authorize(caller, Action.EVENT_READ)
    found = await svc.aggregates.history(aggregate_type, aggregate_id, tenant, from_version, limit)
    await _check_streams(svc, caller, Action.EVENT_READ, _stream_of(found), tenant)
    return found


@router.get(f"{AGGREGATE}/state", response_model=AggregateState)
async def aggregate_state(
    aggregate_type: Name,
    aggregate_id: Name,
    svc: Svc,
    caller: Caller,
    at_version: Annotated[int | None, Query(ge=0)] = None,
    tenant_id: TenantQuery = None,
) -> AggregateState:
    """The payloads folded in version order as JSON merge patches (RFC 7396), at the current
    version or `at_version`."""
    tenant = acting_tenant(caller, tenant_id)
    authorize(caller, Action.EVENT_READ)
    if not caller.grants_stream(ANY):  # a token limited to streams: the aggregate's must be one
        first = await svc.aggregates.history(aggregate_type, aggregate_id, tenant, 1, 1)
        await _check_streams(svc, caller, Action.EVENT_READ, _stream_of(first), tenant)
    return await svc.aggregates.state(aggregate_type, aggregate_id, tenant, at_version)


def _stream_of(history: AggregateHistory) -> list[str]:
    return sorted({e.stream_id for e in history.events})
