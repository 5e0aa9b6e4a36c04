"""The tenant's metrics: `GET /api/v1/metrics` (JSON, or Prometheus text on `Accept:
text/plain` or `?format=prometheus`) and `/ws/monitoring`, which pushes the JSON view every
second with rates over the last five seconds (cluster.services.monitoring). The cluster-wide
Prometheus endpoint without a token is METRICS_PORT's (actors.metrics_exporter)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import Response

from cluster.errors import EsbError
from cluster.observability.exposition import CONTENT_TYPE
from cluster.security import Action, authorize
from cluster.services.monitoring import MonitoringService, TenantMetrics, with_rates
from serve.auth import Caller, TenantQuery, acting_tenant, authenticate
from serve.websocket import refuse, relay

router = APIRouter(tags=["monitoring"])
monitoring = MonitoringService()
PUSH_INTERVAL_S = 1.0
RATE_WINDOW = 5  # pushes


@router.get(
    "/api/v1/metrics",
    response_model=TenantMetrics,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def tenant_metrics(
    request: Request,
    caller: Caller,
    tenant_id: TenantQuery = None,
    format: Annotated[Literal["json", "prometheus"] | None, Query()] = None,
) -> Response:
    """The caller's tenant's streams (published, failed, latency percentiles), consumer lag per
    group and partition, pipelines and subscription deliveries."""
    authorize(caller, Action.STREAM_READ)
    tenant = acting_tenant(caller, tenant_id)
    accept = request.headers.get("accept", "")
    if format == "prometheus" or (format is None and "text/plain" in accept):
        body = await monitoring.tenant_exposition(tenant)
        return Response(body, media_type=CONTENT_TYPE)
    view = await monitoring.tenant_metrics(tenant)
    return Response(view.model_dump_json(), media_type="application/json")


async def _pushes(tenant: str) -> AsyncIterator[bytes]:
    """Rates over the last RATE_WINDOW pushes: Ray refreshes the figures every export interval
    (2 s on the local stack), so push-to-push differences would alternate 0 and double."""
    readings: deque[TenantMetrics] = deque(maxlen=RATE_WINDOW)
    while True:
        current = await monitoring.tenant_metrics(tenant)
        yield with_rates(current, readings[0] if readings else None).model_dump_json().encode()
        readings.append(current)
        await asyncio.sleep(PUSH_INTERVAL_S)


@router.websocket("/ws/monitoring")
async def live_monitoring(websocket: WebSocket) -> None:
    """Every second, the `/api/v1/metrics` JSON of the caller's tenant, with rates."""
    try:
        caller = await authenticate(websocket)
        authorize(caller, Action.STREAM_READ)
        tenant = acting_tenant(caller, websocket.query_params.get("tenant_id"))
    except EsbError as exc:
        await refuse(websocket, exc)
        return
    await websocket.accept()
    with contextlib.suppress(asyncio.CancelledError):
        await relay(websocket, _pushes(tenant))
