"""/schema-registry: the Confluent Schema Registry REST API over the tenant's registry, so a
stock `confluent_kafka.schema_registry.SchemaRegistryClient` (and Confluent's serializers)
work with `url=<api>/schema-registry` and the bus's bearer token (`bearer.auth.credentials.
source: STATIC_TOKEN`; the Confluent Cloud `target-sr-cluster` and identity-pool headers it
adds are ignored). Answers are `application/vnd.schemaregistry.v1+json`; errors are
Confluent's `{"error_code", "message"}`: 40401 subject, 40402 version, 40403 schema not found,
42201 invalid schema, 42202 invalid version, 42203 invalid compatibility level, 409
incompatible, 401xx/403xx for auth.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from cluster.errors import (
    EsbError,
    IncompatibleSchema,
    InvalidInput,
    SchemaError,
    SchemaNotFound,
    SubjectNotFound,
    VersionNotFound,
)
from cluster.models.schemas import SubjectVersion
from cluster.security import Action, Principal, authorize
from cluster.security.access import same_tenant
from pipelines.schemas import SCHEMA_TYPES
from serve.auth import Caller
from serve.body import read_body, validate
from serve.deps import Svc
from serve.registry_models import (
    CompatibilityOut,
    ConfigIn,
    ConfigLevelOut,
    ConfigOut,
    ConfluentErrorOut,
    RegisteredOut,
    SchemaDocument,
    SchemaOut,
    SchemaRequest,
    SchemaTypeList,
    SubjectList,
    SubjectVersionRefs,
    VersionList,
    VersionNumber,
)

MEDIA = "application/vnd.schemaregistry.v1+json"
_CODES: tuple[tuple[type[EsbError], int], ...] = (
    (SubjectNotFound, 40401),
    (VersionNotFound, 40402),
    (SchemaNotFound, 40403),
    (IncompatibleSchema, 409),
)


def error_code(exc: EsbError) -> int:
    """Confluent's error code for one of the bus's errors (else status * 100)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, SchemaError):
        return 42203 if exc.detail.startswith("compatibility ") else 42201
    if isinstance(exc, InvalidInput) and exc.detail.startswith("version "):
        return 42202
    return exc.status * 100


def confluent_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error_code": code, "message": message}
    return JSONResponse(body, status_code=status, media_type=MEDIA, headers=headers)


class ConfluentRoute(APIRoute):
    """Errors as Confluent clients parse them, instead of the rest of the API's problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except EsbError as exc:
                return confluent_error(exc.status, error_code(exc), exc.detail, exc.headers or None)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                )
                return confluent_error(422, 42200, problems)

        return route


router = APIRouter(
    prefix="/schema-registry",
    tags=["schema registry (Confluent API)"],
    route_class=ConfluentRoute,
    responses={  # Confluent's error body (not problem+json): what its clients parse
        status: {"model": ConfluentErrorOut, "description": f"Confluent error {what}"}
        for status, what in (
            (401, "401xx: no token, or one that fails verification"),
            (403, "403xx: the token's role does not allow this"),
            (404, "40401 subject, 40402 version, 40403 schema not found"),
            (409, "409: incompatible with the subject's earlier versions"),
            (422, "42201 invalid schema, 42202 invalid version, 42203 invalid compatibility"),
        )
    },
)
Flag = Annotated[bool, Query()]


def _ok(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=MEDIA)


def _tenant(caller: Principal, action: Action) -> str:
    authorize(caller, action)
    return same_tenant(caller, None)


async def _schema_body(request: Request, svc: Svc) -> SchemaRequest:
    raw = await read_body(request, svc.bus.settings.max_body_bytes)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SchemaError(
            'the body is not JSON: send {"schema": "...", "schemaType": ...}'
        ) from None
    body = validate(SchemaRequest, doc)
    if body.references:
        raise SchemaError("schema references are not supported by this registry")
    return body


def _version_out(found: SubjectVersion) -> dict[str, Any]:
    return {
        "subject": found.subject,
        "version": found.version,
        "id": found.id,
        "schemaType": found.schema_type,
        "schema": found.schema_text,
    }


@router.get("/schemas/types", response_model=SchemaTypeList)
async def schema_types(caller: Caller) -> Response:
    return _ok(list(SCHEMA_TYPES))


@router.get("/schemas/ids/{schema_id}", response_model=SchemaOut)
async def schema_by_id(schema_id: int, svc: Svc, caller: Caller) -> Response:
    stored = await svc.schemas.schema(_tenant(caller, Action.STREAM_READ), schema_id)
    return _ok({"schema": stored.schema_text, "schemaType": stored.schema_type, "references": []})


@router.get("/schemas/ids/{schema_id}/versions", response_model=SubjectVersionRefs)
async def schema_versions(schema_id: int, svc: Svc, caller: Caller) -> Response:
    tenant = _tenant(caller, Action.STREAM_READ)
    await svc.schemas.schema(tenant, schema_id)  # 40403 when it is not the tenant's
    pairs = await svc.schemas.schemas_by_id(tenant)
    return _ok([{"subject": s, "version": r.version} for s, r in pairs if r.id == schema_id])


@router.get("/subjects", response_model=SubjectList)
async def subjects(svc: Svc, caller: Caller, deleted: Flag = False) -> Response:
    return _ok(await svc.schemas.subjects(_tenant(caller, Action.STREAM_READ), deleted=deleted))


@router.get("/subjects/{subject}/versions", response_model=VersionList)
async def versions(subject: str, svc: Svc, caller: Caller, deleted: Flag = False) -> Response:
    tenant = _tenant(caller, Action.STREAM_READ)
    return _ok(await svc.schemas.versions(tenant, subject, deleted=deleted))


@router.get("/subjects/{subject}/versions/{version}", response_model=RegisteredOut)
async def version(
    subject: str, version: str, svc: Svc, caller: Caller, deleted: Flag = False
) -> Response:
    tenant = _tenant(caller, Action.STREAM_READ)
    return _ok(_version_out(await svc.schemas.version(tenant, subject, version, deleted=deleted)))


@router.get("/subjects/{subject}/versions/{version}/schema", response_model=SchemaDocument)
async def version_schema(subject: str, version: str, svc: Svc, caller: Caller) -> Response:
    found = await svc.schemas.version(_tenant(caller, Action.STREAM_READ), subject, version)
    return Response(found.schema_text, media_type=MEDIA)


@router.post("/subjects/{subject}/versions", response_model=RegisteredOut)
async def register(
    subject: str, request: Request, svc: Svc, caller: Caller, normalize: Flag = False
) -> Response:
    """Register a schema (an identical one answers its existing id and version)."""
    body = await _schema_body(request, svc)
    tenant = _tenant(caller, Action.EVENT_PUBLISH)  # serializers auto-register as publishers
    found = await svc.schemas.register(tenant, subject, body.schema_type, body.schema_text)
    return _ok(_version_out(found))


@router.post("/subjects/{subject}", response_model=RegisteredOut)
async def lookup(
    subject: str,
    request: Request,
    svc: Svc,
    caller: Caller,
    normalize: Flag = False,
    deleted: Flag = False,
) -> Response:
    """The version of the subject that holds this schema."""
    body = await _schema_body(request, svc)
    tenant = _tenant(caller, Action.STREAM_READ)
    return _ok(
        _version_out(await svc.schemas.lookup(tenant, subject, body.schema_type, body.schema_text))
    )


@router.delete("/subjects/{subject}", response_model=VersionList)
async def delete_subject(
    subject: str, svc: Svc, caller: Caller, permanent: Flag = False
) -> Response:
    tenant = _tenant(caller, Action.STREAM_UPDATE)
    return _ok(await svc.schemas.delete_subject(tenant, subject, permanent=permanent))


@router.delete("/subjects/{subject}/versions/{version}", response_model=VersionNumber)
async def delete_version(
    subject: str, version: str, svc: Svc, caller: Caller, permanent: Flag = False
) -> Response:
    tenant = _tenant(caller, Action.STREAM_UPDATE)
    return _ok(await svc.schemas.delete_version(tenant, subject, version, permanent=permanent))


@router.post(
    "/compatibility/subjects/{subject}/versions/{version}", response_model=CompatibilityOut
)
async def test_compatibility(
    subject: str,
    version: str,
    request: Request,
    svc: Svc,
    caller: Caller,
    verbose: Flag = False,
    normalize: Flag = False,
) -> Response:
    body = await _schema_body(request, svc)
    tenant = _tenant(caller, Action.STREAM_READ)
    problems = await svc.schemas.test_compatibility(
        tenant, subject, version, body.schema_type, body.schema_text
    )
    answer: dict[str, Any] = {"is_compatible": not problems}
    if verbose:
        answer["messages"] = problems
    return _ok(answer)


@router.get("/config", response_model=ConfigLevelOut)
async def get_config(svc: Svc, caller: Caller) -> Response:
    level = await svc.schemas.compatibility(_tenant(caller, Action.STREAM_READ))
    return _ok({"compatibilityLevel": level})


@router.put("/config", response_model=ConfigOut)
async def put_config(request: Request, svc: Svc, caller: Caller) -> Response:
    return await _set_config(request, svc, caller, None)


@router.delete("/config", response_model=ConfigLevelOut)
async def delete_config(svc: Svc, caller: Caller) -> Response:
    level = await svc.schemas.clear_compatibility(_tenant(caller, Action.STREAM_UPDATE), None)
    return _ok({"compatibilityLevel": level})


@router.get("/config/{subject}", response_model=ConfigLevelOut)
async def get_subject_config(
    subject: str, svc: Svc, caller: Caller, defaultToGlobal: Flag = True
) -> Response:
    level = await svc.schemas.compatibility(_tenant(caller, Action.STREAM_READ), subject)
    return _ok({"compatibilityLevel": level})


@router.put("/config/{subject}", response_model=ConfigOut)
async def put_subject_config(subject: str, request: Request, svc: Svc, caller: Caller) -> Response:
    return await _set_config(request, svc, caller, subject)


@router.delete("/config/{subject}", response_model=ConfigLevelOut)
async def delete_subject_config(subject: str, svc: Svc, caller: Caller) -> Response:
    level = await svc.schemas.clear_compatibility(_tenant(caller, Action.STREAM_UPDATE), subject)
    return _ok({"compatibilityLevel": level})


async def _set_config(
    request: Request, svc: Svc, caller: Principal, subject: str | None
) -> Response:
    raw = await read_body(request, svc.bus.settings.max_body_bytes)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SchemaError(
            'compatibility: the body is not JSON; send {"compatibility": "FULL"}'
        ) from None
    body = validate(ConfigIn, doc)
    tenant = _tenant(caller, Action.STREAM_UPDATE)
    return _ok(
        {"compatibility": await svc.schemas.set_compatibility(tenant, subject, body.compatibility)}
    )
