"""Request bodies read with a size limit, and the content type checked first."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from cluster.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from serve.codecs import media_type, parse_json

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing early (413) once it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    request.state.body_bytes = size  # what a bytes quota charges, chunked bodies included
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, object]:
    kind = media_type(request.headers.get("content-type"))
    if kind != "application/json":
        raise UnsupportedMediaType(
            f"content type {kind or '(none)'!r} is not accepted here; send application/json"
        )
    doc = parse_json(await read_body(request, limit))
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object")
    return doc


def validate(model: type[M], doc: object) -> M:
    """A pydantic model from a parsed body; every problem listed in one 422."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        raise InvalidInput(detail, errors=errors) from None
