"""Request and response bodies of the HTTP API (the SDK's models, plus who is asking)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cluster.models import StreamConfig, StreamRecord
from pipelines.envelope import EventIn


class CreateStreamRequest(StreamConfig):
    tenant_id: str = Field(min_length=1, max_length=64)
    created_by: str = Field(default="api", min_length=1, max_length=64)


class StreamCreated(BaseModel):
    stream_id: str
    kafka_topic: str
    warnings: list[str] = Field(default_factory=list)


class StreamList(BaseModel):
    streams: list[StreamRecord]


class Who(BaseModel):
    """Where an event goes and on whose behalf."""

    model_config = ConfigDict(extra="forbid")

    stream_id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(min_length=1, max_length=64)
    user_id: str = Field(min_length=1, max_length=64)


class PublishRequest(EventIn, Who):
    pass


class PublishResponse(BaseModel):
    stream_id: str
    event_id: str
    status: str
    partition: int | None
    offset: int | None


def batch_body_schema() -> dict[str, Any]:
    """The documented JSON form of a batch (NDJSON and Arrow IPC carry the same event fields)."""
    event = EventIn.model_json_schema()
    who = Who.model_json_schema()
    return {
        "type": "object",
        "required": [*who["required"], "events"],
        "properties": {**who["properties"], "events": {"type": "array", "items": event}},
    }
