"""Health: liveness, and one check per dependency (Kafka, Redis as metadata store, Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from serve.deps import Services, Svc
from serve.models import (
    CheckFailed,
    DatabaseHealth,
    KafkaHealth,
    Liveness,
    RedisHealth,
    StatusReport,
)

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 8.0


async def _kafka(svc: Services) -> dict[str, Any]:
    found = await asyncio.to_thread(svc.bus.topics.health)
    return {"bootstrap_servers": svc.bus.settings.kafka_bootstrap, **found}


async def _redis(svc: Services) -> dict[str, Any]:
    info = await svc.bus.redis.info("server")
    return {"redis_version": info.get("redis_version"), "ping": await svc.bus.redis.ping()}


async def _database(svc: Services) -> dict[str, Any]:
    """The metadata store is Redis: it answers when the registry can be read."""
    return {"store": "redis", "streams": len(await svc.streams.list_streams())}


async def _ray(svc: Services) -> dict[str, Any]:
    import ray

    if not ray.is_initialized():
        return {"connected": False}
    nodes = await asyncio.to_thread(ray.nodes)
    return {"connected": True, "alive_nodes": sum(1 for n in nodes if n.get("Alive"))}


Check = Callable[[Services], Awaitable[dict[str, Any]]]
CHECKS: dict[str, Check] = {"kafka": _kafka, "redis": _redis, "database": _database, "ray": _ray}


async def _run(check: Check, svc: Services) -> dict[str, Any]:
    try:
        return {"status": "ok", **await asyncio.wait_for(check(svc), CHECK_TIMEOUT_S)}
    except Exception as exc:
        return {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}


@router.get("/health", response_model=Liveness)
async def health() -> dict[str, str]:
    """Liveness: the API process answers."""
    return {"status": "ok"}


def _down(what: str, model: type[BaseModel] = CheckFailed) -> dict[int | str, dict[str, Any]]:
    """How a failed check answers (HTTP 503)."""
    return {503: {"model": model, "description": f"{what} is unavailable."}}


@router.get(
    "/api/v1/status",
    response_model=StatusReport,
    responses=_down("A dependency", StatusReport),
    response_description="Every dependency answered.",
)
async def status(svc: Svc) -> JSONResponse:
    results = await asyncio.gather(*(_run(c, svc) for c in CHECKS.values()))
    body = dict(zip(CHECKS, results, strict=True))
    ok = all(r["status"] == "ok" for r in results)
    return JSONResponse({"status": "ok" if ok else "degraded", **body}, 200 if ok else 503)


async def _one(name: str, svc: Services) -> JSONResponse:
    result = await _run(CHECKS[name], svc)
    return JSONResponse(result, 200 if result["status"] == "ok" else 503)


@router.get("/api/v1/kafka/health", response_model=KafkaHealth, responses=_down("Kafka"))
async def kafka_health(svc: Svc) -> JSONResponse:
    return await _one("kafka", svc)


@router.get("/api/v1/redis/health", response_model=RedisHealth, responses=_down("Redis"))
async def redis_health(svc: Svc) -> JSONResponse:
    return await _one("redis", svc)


@router.get(
    "/api/v1/database/health",
    response_model=DatabaseHealth,
    responses=_down("The metadata store"),
)
async def database_health(svc: Svc) -> JSONResponse:
    """The metadata store (Redis)."""
    return await _one("database", svc)
