"""The FastAPI application behind Ray Serve: REST routes, problem+json errors, OpenAPI docs.

Route handlers stay thin: they parse and check the request, then call the SDK's services.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from cluster.settings import Settings
from serve import problems, websocket
from serve.routes import events, health, live, pipelines, streams, subscriptions

VERSION = "0.1.0"


def create_app(settings: Settings) -> FastAPI:
    for package in ("cluster", "serve"):  # LOG_LEVEL applies to the bus's own loggers
        logging.getLogger(package).setLevel(settings.log_level)
    app = FastAPI(
        title="Event Streaming Bus",
        version=VERSION,
        description="Publish events into Kafka, read them back, and watch the bus's health.",
        responses=problems.ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.state.services = None
    problems.install(app)
    app.include_router(health.router)
    app.include_router(streams.router)
    app.include_router(events.router)
    app.include_router(pipelines.router)
    app.include_router(subscriptions.router)
    app.include_router(live.router)
    # Last, so that it only catches WebSocket paths no route above matched.
    app.add_api_websocket_route("/{path:path}", websocket.unknown_route)
    problems.document(app)
    return app
