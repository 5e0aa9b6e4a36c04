"""The event envelope: what a client sends, and the CloudEvents 1.0 record that lands in Kafka.

One Kafka record per event, structured-mode CloudEvents JSON, readable by any Kafka client:

>>> event = EventIn(event_type="user.created", source_capability="users", aggregate_id="u1",
...                 aggregate_type="User", event_time=0, payload={"name": "Ada"})
>>> ce = to_cloudevent(event, event_id="e1", tenant_id="t", stream_id="s", user_id="me")
>>> ce["type"], ce["subject"], ce["time"], ce["data"]
('user.created', 'u1', '1970-01-01T00:00:00.000Z', {'name': 'Ada'})
"""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.errors import InvalidInput

CONTENT_TYPE_HEADER: tuple[str, str | bytes | None] = (
    "content-type",
    b"application/cloudevents+json; charset=utf-8",
)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
# Who an event is published for: a token subject may be an email or an IdP id (`auth0|42`).
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:|+\-]{0,127}$")
"""Tenant and user ids. They end up in topic names (`esb.<tenant>.<topic>`) and Redis keys
(`esb:tenant:<tenant>:...`): no dots, colons or wildcards, so namespaces cannot overlap."""


class EventConfig(BaseModel):
    """What an event is, as in the product quick start."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(min_length=1, max_length=256, pattern=_NAME)
    source_capability: str = Field(min_length=1, max_length=256, pattern=_NAME)
    aggregate_id: str = Field(min_length=1, max_length=256)
    aggregate_type: str = Field(min_length=1, max_length=256)


class EventIn(EventConfig):
    """One event to publish: its config, ids, time and payload."""

    correlation_id: str | None = Field(default=None, max_length=256)
    causation_id: str | None = Field(default=None, max_length=256)
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Client id; re-publishing the same id does not create a second event.",
    )
    event_time: datetime | int | None = Field(
        default=None, description="RFC 3339 or epoch milliseconds; defaults to publish time."
    )
    partition_key: str | None = Field(
        default=None, min_length=1, max_length=256, description="Defaults to aggregate_id."
    )
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event_time")
    @classmethod
    def _aware(cls, value: datetime | int | None) -> datetime | int | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("event_time needs a timezone offset, e.g. 2026-01-01T12:00:00Z")
        if isinstance(value, int) and not 0 <= value < MAX_TIME_MS:
            raise ValueError("event_time in epoch milliseconds must be between 0 and year 9999")
        return value

    @property
    def key(self) -> str:
        return self.partition_key or self.aggregate_id


def partition_for(key: str, partitions: int) -> int:
    """The partition of a key, for every form of record (JSON and Arrow-batched alike): the bus
    places records itself instead of trusting each client library's default partitioner.

    >>> partition_for("user_123", 6)
    5
    """
    return zlib.crc32(key.encode()) % partitions


def event_time_ms(value: datetime | int | None, now_ms: int) -> int:
    if value is None:
        return now_ms
    if isinstance(value, int):
        return value
    return epoch_ms(value)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Exact integer milliseconds of an aware datetime (a float timestamp turns 2.001 s into
    2000 ms).

    >>> epoch_ms(datetime(1970, 1, 1, 0, 0, 2, 1000, tzinfo=UTC))
    2001
    """
    return (moment - EPOCH) // timedelta(milliseconds=1)


MAX_TIME_MS = 253402300800000  # year 10000: past every timestamp Kafka or Python can hold
MAX_OFFSET = 2**63 - 1  # Kafka offsets are int64; larger numbers overflow the client


def parse_time_ms(value: str, name: str = "from_time") -> int:
    """A query's time, RFC 3339 with an offset or epoch milliseconds, as epoch ms (InvalidInput,
    naming `name`, for anything else or out of range).

    >>> parse_time_ms("2026-01-01T00:00:00Z"), parse_time_ms("1767225600000")
    (1767225600000, 1767225600000)
    >>> parse_time_ms("99999999999999999999")
    Traceback (most recent call last):
    ...
    pipelines.errors.InvalidInput: from_time must be between 0 and 253402300799999 (year 9999)
    """
    if value.isdigit():
        moment_ms = int(value)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"{name} {value!r} is neither RFC 3339 nor epoch milliseconds"
            ) from None
        if moment.tzinfo is None:
            raise InvalidInput(f"{name} needs a timezone offset, e.g. 2026-01-01T12:00:00Z")
        moment_ms = int(moment.timestamp() * 1000)
    if not 0 <= moment_ms < MAX_TIME_MS:
        raise InvalidInput(f"{name} must be between 0 and {MAX_TIME_MS - 1} (year 9999)")
    return moment_ms


@lru_cache(maxsize=4096)  # a batch's events mostly share their publish millisecond
def rfc3339_ms(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def to_cloudevent(
    event: EventIn,
    *,
    event_id: str,
    tenant_id: str,
    stream_id: str,
    user_id: str,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """The structured CloudEvent; extension attribute names are lowercase alphanumeric."""
    now = now_ms if now_ms is not None else int(datetime.now(tz=UTC).timestamp() * 1000)
    record: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"/{tenant_id}/{event.source_capability}",
        "type": event.event_type,
        "time": rfc3339_ms(event_time_ms(event.event_time, now)),
        "subject": event.aggregate_id,
        "datacontenttype": "application/json",
        "data": event.payload,
        "tenantid": tenant_id,
        "streamid": stream_id,
        "aggregateid": event.aggregate_id,
        "aggregatetype": event.aggregate_type,
        "userid": user_id,
    }
    if event.correlation_id is not None:
        record["correlationid"] = event.correlation_id
    if event.causation_id is not None:
        record["causationid"] = event.causation_id
    return record


def encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def decode(value: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = orjson.loads(value)
    return decoded
