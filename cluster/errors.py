"""The one exception tree of the bus. HTTP maps each class to its status code and sends its
`headers`; `detail` says what is wrong and how to fix it.

EsbError                      500  (never raised for bad input)          pipelines.errors
├── InvalidInput              422  a field is missing, mistyped or out of range
│   ├── BadRequest            400  the body cannot be parsed at all
│   ├── SpecError             422  a pipeline spec is invalid            pipelines.errors
│   ├── SchemaError           422  a JSON/Avro schema is invalid         pipelines.errors
│   ├── SchemaViolation       422  payloads that do not match their schema  pipelines.errors
│   └── DecodeError           422  values that are not CloudEvents       pipelines.errors
├── SnapshotError             500  a window resume state is corrupt      pipelines.errors
├── UnsupportedMediaType      415
├── PayloadTooLarge           413  body, batch or event over the configured limit  pipelines.errors
├── NotFound                  404
│   ├── SubjectNotFound       404  no such schema subject (Confluent 40401)
│   ├── VersionNotFound       404  no such version of a subject (40402)
│   └── SchemaNotFound        404  no schema with this id (40403)
├── Conflict                  409
│   └── WrongExpectedVersion  409  an aggregate append's expected_version does not hold
│   └── IncompatibleSchema    409  a new version breaks the subject's compatibility
├── Fenced                    409  another owner took the partition over (cluster.stores)
├── ServiceUnavailable        503  Kafka, Redis or Ray cannot be reached
├── Unauthorized              401  no token, or a token that fails verification
├── Forbidden                 403  a valid token whose role or grants do not allow the call
├── TooManyRequests           429  a tenant quota is exhausted for now (`retry_after_s`)
├── DecryptionFailed          500  stored ciphertext does not authenticate (tampered, wrong key)
│   └── KeyDeleted            410  the tenant's data key was deleted: the data is shredded
└── StackError                -    the local stack could not start (CLI only)

>>> Unauthorized("token expired").headers["WWW-Authenticate"]
'Bearer error="invalid_token", error_description="token expired"'
>>> TooManyRequests("slow down", retry_after_s=0.2).headers
{'Retry-After': '1'}
"""

from __future__ import annotations

import math
import re
from typing import Any

from pipelines.errors import (
    DecodeError,
    EsbError,
    InvalidInput,
    PayloadTooLarge,
    SchemaError,
    SchemaViolation,
    SnapshotError,
    SpecError,
)

__all__ = [
    "BadRequest",
    "Conflict",
    "DecodeError",
    "DecryptionFailed",
    "EsbError",
    "Fenced",
    "Forbidden",
    "IncompatibleSchema",
    "InvalidInput",
    "KeyDeleted",
    "NotFound",
    "PayloadTooLarge",
    "SchemaError",
    "SchemaNotFound",
    "SchemaViolation",
    "ServiceUnavailable",
    "SnapshotError",
    "SpecError",
    "StackError",
    "SubjectNotFound",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "VersionNotFound",
]


class BadRequest(InvalidInput):
    status = 400
    title = "Bad request"


class UnsupportedMediaType(EsbError):
    status = 415
    title = "Unsupported media type"


class NotFound(EsbError):
    status = 404
    title = "Not found"


class Conflict(EsbError):
    status = 409
    title = "Conflict"


class SubjectNotFound(NotFound):
    """No such subject in the tenant's schema registry."""


class VersionNotFound(NotFound):
    """The subject has no such version."""


class SchemaNotFound(NotFound):
    """No schema with this id (in the caller's tenant)."""


class IncompatibleSchema(Conflict):
    """A new version breaks the subject's compatibility; `errors` lists why."""


class WrongExpectedVersion(Conflict):
    """409 of an aggregate append: the problem carries `current_version`, to re-read and retry."""

    title = "Wrong expected version"

    def __init__(self, detail: str, *, current_version: int, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.current_version = current_version

    @property
    def extensions(self) -> dict[str, Any]:
        return {"current_version": self.current_version}


class Fenced(EsbError):
    """Another owner took this partition over; this owner must stop without writing."""

    status = 409
    title = "Fenced"


class _RetryLater(EsbError):
    """An error that passes: `retry_after_s`, when known, says when trying again can succeed,
    sent as Retry-After."""

    def __init__(self, detail: str, *, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        # Retry-After is whole seconds; round up so a client that obeys it is not refused again.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class ServiceUnavailable(_RetryLater):
    status = 503
    title = "Service unavailable"


class StackError(EsbError):
    """The local stack could not start; the message says what is missing and how to fix it."""

    title = "Local stack error"


_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750: no quote, backslash, controls


class Unauthorized(EsbError):
    """401: send `WWW-Authenticate` so clients know to (re)authenticate with a bearer token.

    `error=None` is for a request without any token (RFC 6750 §3.1: no error code then).
    """

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str, *, error: str | None = "invalid_token", **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.error = error

    @property
    def headers(self) -> dict[str, str]:
        if self.error is None:
            return {"WWW-Authenticate": 'Bearer realm="esb"'}
        description = _UNSAFE.sub("", self.detail)[:200]
        return {
            "WWW-Authenticate": f'Bearer error="{self.error}", error_description="{description}"'
        }


class Forbidden(EsbError):
    """403: authenticated, but the role or grants do not cover this call."""

    status = 403
    title = "Forbidden"


class TooManyRequests(_RetryLater):
    """429: a quota is used up; `retry_after_s` says when trying again can succeed.

    `retry_after_s=None` when waiting does not help (a count quota: delete something first).
    """

    status = 429
    title = "Too many requests"


class DecryptionFailed(EsbError):
    """Stored ciphertext did not authenticate: tampered, truncated, or bound to other ids."""

    status = 500
    title = "Event data cannot be decrypted"


class KeyDeleted(DecryptionFailed):
    """The tenant's data key is gone (crypto-shredding): the data is unreadable for good."""

    status = 410
    title = "Gone"
