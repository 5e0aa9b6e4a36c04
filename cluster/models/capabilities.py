"""Capabilities (the seed's `source_capability`): what each one publishes (event types with
their schemas, on its stream) and which event types it consumes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CapabilityConfig(BaseModel):
    """What a capability publishes (event type -> schema id or subject) and consumes (globs).

    >>> CapabilityConfig(name="billing", stream="orders", consumes=["order.*"]).publishes
    {}
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    stream: str = Field(min_length=1, max_length=128, description="The stream it publishes to.")
    description: str = Field(default="", max_length=1000)
    publishes: dict[str, int | str] = Field(
        default_factory=dict,
        description="Event type -> schema (id, subject or subject:version); the stream binds "
        "them, so what the capability publishes is validated.",
    )
    consumes: list[str] = Field(
        default_factory=list, max_length=256, description="Event types (globs) it subscribes to."
    )


class CapabilityRecord(CapabilityConfig):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    stream_id: str
    publishes: dict[str, int] = Field(default_factory=dict)  # type: ignore[assignment]  # ids
    registered_at: str


class CatalogEntry(BaseModel):
    """One event type of the tenant's catalog: its schema, who publishes it, who consumes it."""

    event_type: str
    schema_id: int | None
    stream_ids: list[str]
    publishers: list[str]
    subscribers: list[str]
