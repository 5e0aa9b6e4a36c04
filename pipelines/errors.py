"""The errors pure pipeline code raises. They are the bottom of the bus's one exception tree,
drawn in cluster.errors (which re-exports them): the root lives here, in the lowest layer, so
that specs, decoders and Arrow batches raise what every layer above maps to an HTTP status
without importing upward.

>>> issubclass(SpecError, InvalidInput), InvalidInput.status
(True, 422)
>>> EsbError("boom").headers
{}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class EsbError(Exception):
    """The root: `status` and `title` for HTTP, `detail` says what is wrong and how to fix it,
    `errors` lists per-field problems, `headers` what the answer must carry (e.g. Retry-After),
    `extensions` more members of the problem document (RFC 9457, e.g. `current_version`)."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    @property
    def headers(self) -> dict[str, str]:
        return {}

    @property
    def extensions(self) -> dict[str, Any]:
        return {}


class InvalidInput(EsbError):
    status = 422
    title = "Invalid input"


class PayloadTooLarge(EsbError):
    status = 413
    title = "Payload too large"


class SpecError(InvalidInput):
    """A pipeline spec could not be parsed or failed validation (HTTP 422)."""


class SchemaError(InvalidInput):
    """A JSON Schema or Avro schema that cannot be parsed or is invalid (HTTP 422)."""


class SchemaViolation(InvalidInput):
    """Event payloads that do not match their type's schema; `errors` says which and why."""


class DecodeError(InvalidInput):
    """Some values are not decodable CloudEvents; ``rejected`` holds their positions."""

    def __init__(self, detail: str, rejected: Sequence[int]) -> None:
        super().__init__(detail)
        self.rejected = tuple(rejected)


class SnapshotError(EsbError, ValueError):
    """A resume state is corrupt or was taken with a different window definition."""
