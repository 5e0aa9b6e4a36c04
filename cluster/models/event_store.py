"""What the event store takes and answers: stored events, queries and their pages, aggregate
appends (with KurrentDB-style expected versions), histories and folded states."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.envelope import epoch_ms

ExpectedVersion = Literal["any", "no_stream", "exists"] | int
MAX_APPEND_EVENTS = 100


class StoredEvent(BaseModel):
    """One event as stored in Kafka (decrypted for an encrypted stream), and where it is."""

    stream_id: str
    partition: int
    offset: int
    index: int = Field(description="Its place inside an Arrow-batched record (0 otherwise).")
    event: dict[str, Any] = Field(description="The CloudEvent.")
    version: int | None = Field(default=None, description="Its aggregate version, if appended.")


class EventQuery(BaseModel):
    """Filters of POST /api/v1/events/query; every given filter must match."""

    model_config = ConfigDict(extra="forbid")

    stream_id: str | None = Field(default=None, min_length=1, max_length=128)
    stream_ids: list[str] | None = Field(default=None, max_length=50)
    event_types: list[str] | None = Field(
        default=None, max_length=50, description="Globs (`order.*`); any may match."
    )
    aggregate_id: str | None = Field(default=None, min_length=1, max_length=256)
    aggregate_type: str | None = Field(default=None, min_length=1, max_length=256)
    correlation_id: str | None = Field(default=None, min_length=1, max_length=256)
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    from_time: datetime | int | None = Field(
        default=None, description="Inclusive; RFC 3339 or epoch milliseconds."
    )
    to_time: datetime | int | None = Field(
        default=None, description="Exclusive; RFC 3339 or epoch milliseconds."
    )
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=2048)

    @field_validator("from_time", "to_time")
    @classmethod
    def _aware(cls, value: datetime | int | None) -> datetime | int | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("times need a timezone offset, e.g. 2026-01-01T12:00:00Z")
        return value

    @property
    def streams(self) -> list[str]:
        return [*([self.stream_id] if self.stream_id else []), *(self.stream_ids or [])]

    def window_ms(self) -> tuple[int | None, int | None]:
        return _ms(self.from_time), _ms(self.to_time)


def _ms(value: datetime | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return epoch_ms(value)


class QueryPage(BaseModel):
    events: list[StoredEvent]
    next_cursor: str | None = Field(description="Pass it back for the next page; null: no more.")


class AppendEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
    payload: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Retried after an unknown outcome, the same ids answer the same versions.",
    )
    correlation_id: str | None = Field(default=None, max_length=256)
    causation_id: str | None = Field(default=None, max_length=256)


class AppendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream_id: str = Field(min_length=1, max_length=128)
    expected_version: ExpectedVersion = Field(
        default="any",
        description="`any`, `no_stream` (a new aggregate), `exists`, or the current version.",
    )
    events: list[AppendEvent] = Field(min_length=1, max_length=MAX_APPEND_EVENTS)

    @model_validator(mode="after")
    def _check(self) -> AppendRequest:
        if isinstance(self.expected_version, int) and self.expected_version < 0:
            raise ValueError("expected_version must be >= 0 (0: the aggregate has no events)")
        ids = [e.event_id for e in self.events if e.event_id]
        if len(ids) != len(set(ids)):
            raise ValueError("event_id values must differ within one append")
        return self


class AppendedEvent(BaseModel):
    event_id: str
    version: int
    partition: int | None = None
    offset: int | None = None


class AppendResult(BaseModel):
    aggregate_type: str
    aggregate_id: str
    stream_id: str
    version: int = Field(description="The aggregate's version after this append.")
    duplicate: bool = Field(description="True: these event ids were appended before.")
    events: list[AppendedEvent]


class AggregateHistory(BaseModel):
    aggregate_type: str
    aggregate_id: str
    version: int = Field(description="The aggregate's current version.")
    events: list[StoredEvent] = Field(description="In version order, each with its version.")


class AggregateState(BaseModel):
    aggregate_type: str
    aggregate_id: str
    version: int = Field(description="The version the state is at.")
    state: Any = Field(description="The payloads folded as JSON merge patches (RFC 7396).")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge recursively, null deletes, anything else replaces.

    >>> merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]})
    {'a': 1, 'b': {'d': 3, 'e': 4}, 'f': [1]}
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
