"""/dashboard: the web UI, plain HTML, CSS and JavaScript shipped in the package (serve/dashboard,
no build step, nothing from a CDN). The page itself needs no token; its script signs in with
`?access_token=` or a sign-in field and then reads the REST API and `/ws/monitoring`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

# A page, not an API: left out of the OpenAPI document.
router = APIRouter(tags=["dashboard"])
ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
MEDIA_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@cache
def _asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The dashboard page: streams, subscriptions, pipelines, live charts."""
    return HTMLResponse(_asset("index.html"))


@router.get("/dashboard/static/{name}", response_class=Response, include_in_schema=False)
async def dashboard_asset(name: Literal["dashboard.js", "dashboard.css"]) -> Response:
    """The page's script and style sheet."""
    headers = {"Cache-Control": "no-cache"}
    return Response(_asset(name), media_type=MEDIA_TYPES[name], headers=headers)
