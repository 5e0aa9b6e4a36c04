"""Errors as application/problem+json (RFC 9457): every failure says what is wrong."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from cluster.errors import EsbError, ServiceUnavailable
from serve.websocket import refuse

PROBLEM = "application/problem+json"
log = logging.getLogger(__name__)
# Redis's connection-class errors: refused or dropped, timed out, still loading its AOF after a
# restart (BusyLoadingError is a ConnectionError). Redis is down for now, the server is not
# broken: 503 with Retry-After, so a client waits and tries again.
REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
REDIS_RETRY_AFTER_S = 2


class Problem(BaseModel):
    """An error answer (RFC 9457); `errors` lists per-field problems of a 422."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


_STATUSES = {
    400: "The body cannot be parsed",
    401: "No token, or one that fails verification",
    403: "The token's role or grants do not allow this",
    404: "Not found (another tenant's resources answer the same)",
    409: "Conflict with the current state",
    413: "Body or batch over the configured limit",
    415: "Unsupported content type",
    422: "Invalid input: `detail` and `errors` say which field and why",
    429: "A tenant quota is used up for now (see Retry-After)",
    503: "Kafka, Redis or Ray cannot be reached",
}
# Documented on every route (the app's `responses`): the answers _esb_error and friends give.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status, description in _STATUSES.items()
}


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _where(conn: HTTPConnection) -> str:
    return f"{conn.scope.get('method', 'WEBSOCKET')} {conn.url.path}"


async def _esb_error(conn: HTTPConnection, exc: Exception) -> JSONResponse | None:
    assert isinstance(exc, EsbError)
    if exc.status >= 500:
        log.warning("%s failed: %s", _where(conn), exc.detail)
    return await _answer(conn, exc)


async def _answer(conn: HTTPConnection, exc: EsbError) -> JSONResponse | None:
    if isinstance(conn, WebSocket):  # a socket's handler closes it (4000 + status)
        await refuse(conn, exc)
        return None
    extra = {"errors": exc.errors} if exc.errors else {}
    extra |= exc.extensions  # RFC 9457 extension members (e.g. current_version)
    # WWW-Authenticate on a 401, Retry-After on a 429 (cluster.errors).
    return problem(exc.status, exc.title, exc.detail, headers=exc.headers or None, **extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "Invalid input", detail, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return problem(
        exc.status_code, str(exc.detail), f"{request.method} {request.url.path}: {exc.detail}"
    )


async def _redis_down(conn: HTTPConnection, exc: Exception) -> JSONResponse | None:
    log.warning("%s: Redis is unavailable: %r", _where(conn), exc)
    down = ServiceUnavailable(
        f"Redis is unavailable ({type(exc).__name__}), so the request could not be answered; "
        f"try again in {REDIS_RETRY_AFTER_S} s (Retry-After)",
        retry_after_s=REDIS_RETRY_AFTER_S,
    )
    return await _answer(conn, down)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return problem(500, "Internal error", f"{type(exc).__name__}: the server failed; see its log")


def install(app: FastAPI) -> None:
    # These two answer requests and close sockets alike; Starlette types a handler as one or
    # the other.
    app.add_exception_handler(EsbError, _esb_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for redis_down in REDIS_DOWN:
        app.add_exception_handler(redis_down, _redis_down)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


def document(app: FastAPI) -> None:
    """Put Problem in the OpenAPI components, where ERROR_RESPONSES refer to it."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        return app.openapi_schema or schema

    app.openapi = openapi  # type: ignore[method-assign]
