"""Request and response bodies of the HTTP API (the SDK's models, plus who is asking)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cluster.models.streams import StreamConfig, StreamRecord
from pipelines.envelope import EventIn


class CreateStreamRequest(StreamConfig):
    """The stream goes into the token's tenant; `created_by` is the token's subject."""

    tenant_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="The token's tenant, or omit it."
    )


class StreamCreated(BaseModel):
    stream_id: str
    kafka_topic: str
    warnings: list[str] = Field(default_factory=list)


class StreamList(BaseModel):
    streams: list[StreamRecord]


class Who(BaseModel):
    """Where an event goes and on whose behalf (default: the token's subject). The tenant is
    the token's: `tenant_id` may be left out, and naming another tenant is a 403."""

    model_config = ConfigDict(extra="forbid")

    stream_id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(min_length=1, max_length=64)
    user_id: str = Field(min_length=1, max_length=128)


class PublishRequest(EventIn, Who):
    pass


class PublishResponse(BaseModel):
    stream_id: str
    event_id: str
    status: str
    partition: int | None
    offset: int | None


# Filled in from the token when a client leaves them out.
FROM_TOKEN = ("tenant_id", "user_id")


def publish_body_schema() -> dict[str, Any]:
    """The documented JSON form of one event: PublishRequest, tenant and user optional."""
    schema = PublishRequest.model_json_schema()
    schema["required"] = [f for f in schema["required"] if f not in FROM_TOKEN]
    return schema


def batch_body_schema() -> dict[str, Any]:
    """The documented JSON form of a batch (NDJSON and Arrow IPC carry the same event fields)."""
    event = EventIn.model_json_schema()
    who = Who.model_json_schema()
    return {
        "type": "object",
        "required": [*(f for f in who["required"] if f not in FROM_TOKEN), "events"],
        "properties": {**who["properties"], "events": {"type": "array", "items": event}},
    }
