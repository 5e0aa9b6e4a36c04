"""Stream configuration (as in the product quick start) and what the registry stores about it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CompressionType = Literal["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]
DEFAULT_REPLICAS = 3  # a stream's replicas when it names none, as far as the brokers go


class StreamConfig(BaseModel):
    """A stream: a named Kafka topic in a tenant's namespace, with its topic settings.

    >>> StreamConfig(stream_name="user_events", topic_name="apg-user-events",
    ...              source_capability="user_management").partitions
    3
    """

    model_config = ConfigDict(extra="forbid")

    stream_name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w.\-]*$")
    topic_name: str = Field(min_length=1, max_length=180, pattern=r"^[A-Za-z0-9._\-]+$")
    source_capability: str = Field(min_length=1, max_length=256)
    partitions: int = Field(default=3, ge=1, le=1000)
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="Replicas of the topic, capped at the brokers there are (with a warning). "
        f"Unset: as many as the brokers allow, up to {DEFAULT_REPLICAS}.",
    )
    retention_time_ms: int = Field(
        default=7 * 24 * 3600 * 1000, ge=-1, description="-1 keeps events forever."
    )
    compression_type: CompressionType = "producer"
    cleanup_policy: Literal["delete", "compact"] = "delete"
    encrypted: bool = Field(
        default=False,
        description="Store event data AES-256-GCM encrypted (needs a master key). Fixed at "
        "creation: apply refuses to change it.",
    )
    event_store: bool = Field(
        default=True,
        description="Index the stream's events for the event store (lookup by id, queries, "
        "aggregate appends). Off for high-volume analytic streams: the indexer reads past them. "
        "Turned on later, earlier events are indexed by `esb events rebuild-index`.",
    )
    schemas: dict[str, int | str] = Field(
        default_factory=dict,
        description="Event type -> schema (an id, a subject for its latest version, or "
        "`subject:version`): publishing validates each event of the type against it. Stored as "
        "schema ids: a subject binds the version that is latest when the stream is saved.",
    )

    def topic_configs(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_time_ms),
            "compression.type": self.compression_type,
            "cleanup.policy": self.cleanup_policy,
        }


class StreamRecord(StreamConfig):
    """A stream as registered: its config plus where it lives and who made it."""

    model_config = ConfigDict(extra="ignore")

    stream_id: str
    tenant_id: str
    kafka_topic: str
    created_by: str
    created_at: str
    replication_factor: int  # what the topic got
    requested_replication_factor: int | None  # what was asked for (None: the default)
    schemas: dict[str, int] = Field(default_factory=dict)  # type: ignore[assignment]  # ids once saved


class StreamProvisioned(BaseModel):
    stream_id: str
    kafka_topic: str
    action: Literal["created", "updated", "unchanged"]
    changes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
