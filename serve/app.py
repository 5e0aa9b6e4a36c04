"""The FastAPI application behind Ray Serve: REST routes, problem+json errors, OpenAPI docs.

Route handlers stay thin: they parse and check the request, then call the SDK's services.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from cluster.settings import Settings
from serve import problems, websocket
from serve.lifespan import lifespan
from serve.routes import (
    capabilities,
    dashboard,
    event_store,
    events,
    health,
    live,
    monitoring,
    pipelines,
    schema_registry,
    schemas,
    streams,
    subscriptions,
)

VERSION = "0.1.0"
DESCRIPTION = """Publish events into Kafka, read them back, process and subscribe to them, and
watch the bus's health. Send a bearer token (`esb tokens create`) as `Authorization: Bearer`.

**WebSockets** (not listed below: OpenAPI has no WebSockets). The token goes in
`?access_token=` or the Authorization header.

- `/ws/events/{stream}`: a live tail; `event_types`, `start` (`latest` or `earliest`),
  `from_time_ms`.
- `/ws/pipelines/{pipeline_id}`: each commit's new window results.
- `/ws/subscriptions/{subscription_id}`: a subscription's status and deliveries.
- `/ws/monitoring`: the tenant's figures, every second.

A refused WebSocket is accepted, then closed with 4000 + the HTTP status and the problem's
detail as the reason: 4401 no or bad token, 4403 not allowed, 4404 not found, 4422 bad query,
4429 over quota, 4503 a backend is down. A client that falls 1,000 messages behind is closed
with 1008.
"""


def create_app(settings: Settings) -> FastAPI:
    for package in ("cluster", "serve"):  # LOG_LEVEL applies to the bus's own loggers
        logging.getLogger(package).setLevel(settings.log_level)
    app = FastAPIOffline(  # /docs and /redoc from the package's own assets, not a CDN
        title="Event Streaming Bus",
        version=VERSION,
        description=DESCRIPTION,
        responses=problems.ERROR_RESPONSES,
        lifespan=lifespan,  # logs, metrics and traces set up in each replica
    )
    app.state.settings = settings
    app.state.services = None
    problems.install(app)
    app.include_router(health.router)
    app.include_router(streams.router)
    app.include_router(events.router)
    app.include_router(event_store.router)
    app.include_router(pipelines.router)
    app.include_router(subscriptions.router)
    app.include_router(live.router)
    app.include_router(monitoring.router)
    app.include_router(dashboard.router)
    app.include_router(schemas.router)
    app.include_router(capabilities.router)
    app.include_router(schema_registry.router)
    # Last, so that it only catches WebSocket paths no route above matched.
    app.add_api_websocket_route("/{path:path}", websocket.unknown_route)
    problems.document(app)
    return app
