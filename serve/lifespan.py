"""The API replica's start: observability set up in the replica's own process (create_app runs
in the deploying driver; the app is unpickled in each replica, and only its lifespan runs there)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cluster.observability.setup import setup_process


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    setup_process(app.state.settings, "api")
    yield
