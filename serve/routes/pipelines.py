"""/api/v1/pipelines: submit, list, inspect and stop pipeline jobs; query their results; and
/ws/pipelines/{id}: live results as they are committed."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from cluster import naming
from cluster.errors import EsbError
from cluster.models.pipelines import PipelineRecord
from cluster.security import Action, Principal, authorize
from pipelines.envelope import MAX_OFFSET, MAX_TIME_MS
from pipelines.spec import PipelineSpec
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
    PipelineDeadLetters,
    PipelineList,
    PipelinePatterns,
    PipelineResults,
    PipelineStatus,
    PipelineStopped,
    PipelineSubmitted,
)
from serve.websocket import redis_messages, refuse, relay

router = APIRouter(tags=["pipelines"])


class SubmitPipeline(BaseModel):
    """The pipeline runs in the token's tenant; `created_by` is the token's subject."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The token's tenant, or omit it."
    )
    owners: int = Field(default=2, ge=1, le=64, description="Partition-owner actors.")
    spec: PipelineSpec


@router.post(
    "/api/v1/pipelines",
    status_code=201,
    response_model=PipelineSubmitted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SubmitPipeline.model_json_schema()}},
        }
    },
)
async def submit_pipeline(request: Request, svc: Svc, caller: Caller) -> JSONResponse:
    """Submit a pipeline as a Ray job over the spec's source stream."""
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    tenant = body_tenant(caller, doc)
    body = validate(SubmitPipeline, client_fields(doc))
    await authorize_stream(svc, caller, Action.PIPELINE_MANAGE, body.spec.source_stream, tenant)
    right = body.spec.join.right.source_stream if body.spec.join else None
    if right is not None:  # a join reads its right stream too
        await authorize_stream(svc, caller, Action.PIPELINE_MANAGE, right, tenant)
    record = await svc.processing.submit_pipeline(body.spec, tenant, caller.subject, body.owners)
    return JSONResponse(
        {"pipeline_id": record.pipeline_id, "job_id": record.job_id},
        status_code=201,
        headers={"Location": f"/api/v1/pipelines/{record.pipeline_id}"},
    )


@router.get("/api/v1/pipelines", response_model=PipelineList)
async def list_pipelines(svc: Svc, caller: Caller, tenant_id: TenantQuery = None) -> PipelineList:
    authorize(caller, Action.PIPELINE_READ)
    records = await svc.processing.list_pipelines(scope(caller, tenant_id))
    granted = [r for r in records if caller.grants_stream(r.stream_id, r.spec.source_stream)]
    return PipelineList(pipelines=granted)


async def _pipeline(
    svc: Services, caller: Principal, action: Action, pipeline_id: str, tenant_id: str | None
) -> PipelineRecord:
    """The pipeline if it is the caller's (else 404) and the token allows `action` on its
    source stream (a pipeline's results are that stream's data)."""
    record = await svc.processing.get_record(pipeline_id, scope(caller, tenant_id))
    await authorize_stream(svc, caller, action, record.stream_id, record.tenant_id)
    return record


@router.get("/api/v1/pipelines/{pipeline_id}", response_model=PipelineStatus)
async def get_pipeline(
    pipeline_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """The spec, the job's state and progress (lag per partition, events, windows, late)."""
    record = await _pipeline(svc, caller, Action.PIPELINE_READ, pipeline_id, tenant_id)
    return await svc.processing.status(record.pipeline_id, record.tenant_id)


class ReplacePatterns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patterns: list[dict[str, Any]] = Field(
        min_length=1, description="The new pattern set (as in a spec's `patterns`)."
    )


@router.get("/api/v1/pipelines/{pipeline_id}/patterns", response_model=PipelinePatterns)
async def get_patterns(
    pipeline_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """The pattern set a pattern pipeline runs, with its version."""
    record = await _pipeline(svc, caller, Action.PIPELINE_READ, pipeline_id, tenant_id)
    return await svc.processing.get_patterns(record.pipeline_id, record.tenant_id)


@router.put(
    "/api/v1/pipelines/{pipeline_id}/patterns",
    response_model=PipelinePatterns,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReplacePatterns.model_json_schema()}},
        }
    },
)
async def put_patterns(
    pipeline_id: str, request: Request, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """Change the patterns while the job runs: owners apply them at their next commit."""
    record = await _pipeline(svc, caller, Action.PIPELINE_MANAGE, pipeline_id, tenant_id)
    doc = await read_json_object(request, svc.bus.settings.max_body_bytes)
    body = validate(ReplacePatterns, doc)
    return await svc.processing.put_patterns(record.pipeline_id, body.patterns, record.tenant_id)


@router.delete("/api/v1/pipelines/{pipeline_id}", response_model=PipelineStopped)
async def stop_pipeline(
    pipeline_id: str, svc: Svc, caller: Caller, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    """Stop the job; its results stay queryable."""
    found = await _pipeline(svc, caller, Action.PIPELINE_MANAGE, pipeline_id, tenant_id)
    record = await svc.processing.stop_pipeline(found.pipeline_id, found.tenant_id)
    return {"pipeline_id": record.pipeline_id, "stopped": True}


@router.get("/api/v1/pipelines/{pipeline_id}/results", response_model=PipelineResults)
async def pipeline_results(
    pipeline_id: str,
    svc: Svc,
    caller: Caller,
    tenant_id: TenantQuery = None,
    key: Annotated[str | None, Query(max_length=256)] = None,
    from_ms: Annotated[
        int | None,
        Query(ge=0, lt=MAX_TIME_MS, description="Window start (with key) or end >= this (ms)."),
    ] = None,
    to_ms: Annotated[
        int | None, Query(ge=0, lt=MAX_TIME_MS, description="... and < this (epoch ms).")
    ] = None,
    latest: Annotated[
        int | None,
        Query(ge=1, le=10_000, description="A count: the newest this many windows per key."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Results per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Results to skip.")] = 0,
) -> dict[str, Any]:
    record = await _pipeline(svc, caller, Action.PIPELINE_READ, pipeline_id, tenant_id)
    return await svc.processing.results(
        record.pipeline_id,
        record.tenant_id,
        key=key,
        from_ms=from_ms,
        to_ms=to_ms,
        latest=latest,
        limit=limit,
        offset=offset,
    )


@router.get("/api/v1/pipelines/{pipeline_id}/dead-letters", response_model=PipelineDeadLetters)
async def pipeline_dead_letters(
    pipeline_id: str,
    svc: Svc,
    caller: Caller,
    tenant_id: TenantQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Late events (late_policy dead_letter) and undecodable records, oldest first."""
    record = await _pipeline(svc, caller, Action.PIPELINE_READ, pipeline_id, tenant_id)
    found = await svc.processing.dead_letters(record.pipeline_id, record.tenant_id, limit)
    return {"dead_letters": found}


@router.websocket("/ws/pipelines/{pipeline_id}")
async def live_results(websocket: WebSocket, pipeline_id: str) -> None:
    """Each commit's new window results, as JSON arrays. A client that falls more than
    1,000 messages behind is closed with 1008, so it never slows the pipeline."""
    svc = services(websocket)
    try:
        caller = await authenticate(websocket)
        tenant = websocket.query_params.get("tenant_id")
        await _pipeline(svc, caller, Action.PIPELINE_READ, pipeline_id, tenant)
    except EsbError as exc:
        await refuse(websocket, exc)
        return
    await websocket.accept()
    pubsub = svc.bus.redis.pubsub()
    await pubsub.subscribe(naming.pipeline_key(pipeline_id, "live"))
    try:
        await relay(websocket, redis_messages(pubsub))
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
