"""/ws/events/{stream_name}: a live tail of a stream's events (cluster.services.live).

Query: `access_token` (or an Authorization header; the token needs event.read on the
stream), `event_types` (comma-separated globs, default all), `start` (`latest`, the default:
events published after the socket opened; or `earliest`) or `from_time_ms`. Each message is
one event as JSON: `{"partition", "offset", "key", "event": <the CloudEvent>}`. A client that
falls more than 1,000 events behind is closed with 1008, so it never slows publishing.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from cluster.errors import EsbError
from cluster.security import Action, authorize
from pipelines.envelope import parse_time_ms
from serve.auth import authenticate, scope
from serve.deps import services
from serve.websocket import refuse, relay

router = APIRouter(tags=["events"])


@router.websocket("/ws/events/{stream_name}")
async def live_events(websocket: WebSocket, stream_name: str) -> None:
    svc = services(websocket)
    params = websocket.query_params
    try:
        caller = await authenticate(websocket)
        authorize(caller, Action.EVENT_READ)
        record = await svc.bus.streams.resolve(stream_name, scope(caller, params.get("tenant_id")))
        authorize(caller, Action.EVENT_READ, stream=(record.stream_id, record.stream_name))
        raw_time = params.get("from_time_ms")
        from_time_ms = None if raw_time is None else parse_time_ms(raw_time, "from_time_ms")
        globs = [g.strip() for g in params.get("event_types", "*").split(",") if g.strip()]
        # Positions are fixed before the handshake: `latest` means after the socket opened.
        tail = await svc.live.open(
            record,
            start=params.get("start", "latest"),
            from_time_ms=from_time_ms,
            event_types=globs,
        )
    except EsbError as exc:
        await refuse(websocket, exc)
        return
    await websocket.accept()
    try:
        await relay(websocket, tail.frames())
    finally:
        await tail.close()
