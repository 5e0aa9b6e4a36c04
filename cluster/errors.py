"""The one exception tree of the bus. HTTP maps each class to its status code.

EsbError                      500  (never raised for bad input)
├── InvalidInput              422  a field is missing, mistyped or out of range
│   └── BadRequest            400  the body cannot be parsed at all
├── UnsupportedMediaType      415
├── PayloadTooLarge           413  body bytes or batch size over the configured limit
├── NotFound                  404
├── Conflict                  409
├── ServiceUnavailable        503  Kafka, Redis or Ray cannot be reached
└── StackError                -    the local stack could not start (CLI only)
"""

from __future__ import annotations

from typing import Any


class EsbError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class InvalidInput(EsbError):
    status = 422
    title = "Invalid input"


class BadRequest(InvalidInput):
    status = 400
    title = "Bad request"


class UnsupportedMediaType(EsbError):
    status = 415
    title = "Unsupported media type"


class PayloadTooLarge(EsbError):
    status = 413
    title = "Payload too large"


class NotFound(EsbError):
    status = 404
    title = "Not found"


class Conflict(EsbError):
    status = 409
    title = "Conflict"


class ServiceUnavailable(EsbError):
    status = 503
    title = "Service unavailable"


class StackError(EsbError):
    """The local stack could not start; the message says what is missing and how to fix it."""

    title = "Local stack error"
