"""Request and response bodies of the HTTP API (the SDK's models, plus who is asking).

The response models describe exactly the JSON each route returns (the same keys, in the same
order), as documented in /openapi.json: routes that return a plain dict have it validated and
serialized through them, so a field added to a service's answer must be added here too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from cluster.models.pipelines import PipelineRecord
from cluster.models.streams import StreamConfig, StreamRecord
from cluster.models.subscriptions import DeliveryMode, SubscriptionRecord, SubscriptionState
from pipelines.envelope import EventIn

Target = Literal["webhook", "kafka", "pull"]


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
    status: Literal["published", "duplicate"]
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


# --- what the routes answer ------------------------------------------------------------
# --- health -----------------------------------------------------------------------------------


class Liveness(BaseModel):
    status: Literal["ok"]


class CheckFailed(BaseModel):
    """A dependency that failed, or did not answer within 8 seconds (HTTP 503)."""

    status: Literal["unavailable"]
    error: str = Field(description="`<exception type>: <message>`")


class KafkaHealth(BaseModel):
    status: Literal["ok"]
    bootstrap_servers: str
    brokers: int
    topics: int


class RedisHealth(BaseModel):
    status: Literal["ok"]
    redis_version: str | None
    ping: bool


class DatabaseHealth(BaseModel):
    """The metadata store is Redis: it is healthy when the stream registry can be read."""

    status: Literal["ok"]
    store: Literal["redis"]
    streams: int = Field(description="Streams registered, all tenants.")


class RayHealth(BaseModel):
    status: Literal["ok"]
    connected: bool = Field(description="Whether this API process is connected to Ray.")
    alive_nodes: int | None = Field(default=None, description="Present only when connected.")


KafkaCheck = Annotated[KafkaHealth | CheckFailed, Field(discriminator="status")]
RedisCheck = Annotated[RedisHealth | CheckFailed, Field(discriminator="status")]
DatabaseCheck = Annotated[DatabaseHealth | CheckFailed, Field(discriminator="status")]
RayCheck = Annotated[RayHealth | CheckFailed, Field(discriminator="status")]


class StatusReport(BaseModel):
    """Every dependency's check; `degraded` (HTTP 503) when one of them is not `ok`."""

    status: Literal["ok", "degraded"]
    kafka: KafkaCheck
    redis: RedisCheck
    database: DatabaseCheck
    ray: RayCheck


# --- streams ----------------------------------------------------------------------------------


class StreamDeleted(BaseModel):
    deleted: str = Field(description="The deleted stream's id.")
    kafka_topic: str


class PageEntry(BaseModel):
    """One Kafka record of a page."""

    partition: int
    offset: int
    timestamp_ms: int
    key: str | None


class EventEntry(PageEntry):
    event: Any = Field(description="The CloudEvent (decrypted, for an encrypted stream).")


class ArrowBatchEntry(PageEntry):
    """An Arrow-batched record: one offset, many events."""

    format: Literal["arrow-batch-v1"]
    events: list[dict[str, Any]] = Field(description="Its events, as CloudEvents.")


class RawEntry(PageEntry):
    """A record that is not a CloudEvent (another client wrote it), as text."""

    raw: str


class EventPage(BaseModel):
    stream_id: str
    events: list[EventEntry | ArrowBatchEntry | RawEntry]
    next_cursor: str | None = Field(description="Pass it back as `cursor`; null at the end.")


class PartitionOffsets(BaseModel):
    partition: int
    start_offset: int
    end_offset: int


class StreamMetrics(BaseModel):
    stream_id: str
    kafka_topic: str
    partitions: list[PartitionOffsets]
    event_count: int = Field(description="Records the topic holds now.")
    events_published: int = Field(description="Events published through the bus, ever.")
    publish_rate_per_s: float = Field(description="events_published / seconds since created.")
    since: str = Field(description="When the stream was created (RFC 3339).")


# --- pipelines --------------------------------------------------------------------------------


class PipelineSubmitted(BaseModel):
    pipeline_id: str
    job_id: str = Field(description="The Ray job's submission id.")


class PipelineList(BaseModel):
    pipelines: list[PipelineRecord]


class PartitionLag(BaseModel):
    partition: int
    committed_offset: int | None
    end_offset: int
    lag: int


class PartitionProgress(PartitionLag):
    """A partition's lag, and its counters (events_in, windows_emitted, late_dropped, ...)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, int] = Field(init=False)


class OwnerPlacement(BaseModel):
    owner: int
    partitions: list[int]
    node_id: str = Field(description="The Ray node id (hex) the owner runs on.")
    node_address: str


class PipelineStatus(PipelineRecord):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    state: str = Field(description="The Ray job's status (RUNNING, FAILED, ...), or STOPPED.")
    owner_restarts: int
    owner_moves: int = Field(description="Owners moved to another Ray node (nodes joined/left).")
    placement: list[OwnerPlacement] = Field(description="Which Ray node runs which partitions.")
    progress: dict[str, int] = Field(description="The partitions' counters summed, and lag.")
    partitions_progress: list[PartitionProgress]
    owners_patterns_version: dict[str, int] = Field(
        default_factory=dict,
        description="Pattern pipelines: owner (its partitions, e.g. '0-2') -> pattern version.",
    )


class PipelinePatterns(BaseModel):
    pipeline_id: str
    version: int = Field(description="1 for the submitted spec's patterns, +1 per change.")
    patterns: list[dict[str, Any]]


class PipelineStopped(BaseModel):
    pipeline_id: str
    stopped: Literal[True]


class PipelineResults(BaseModel):
    pipeline_id: str
    results: list[dict[str, Any]] = Field(
        description="Window results: key, window_start_ms, window_end_ms, the aggregations, "
        "revision, closed. Join pairs: key, left/right_event_id, left/right_time_ms, "
        "left.<f>, right.<f>. Pattern matches: pattern, key, kind, start_ms, end_ms, events."
    )
    next_offset: int | None = Field(description="Pass it back as `offset`; null at the end.")


class PipelineDeadLetters(BaseModel):
    dead_letters: list[dict[str, Any]] = Field(
        description="Late events (late_policy dead_letter) and undecodable records."
    )


# --- subscriptions ----------------------------------------------------------------------------


class SubscriptionView(SubscriptionRecord):
    """A subscription as registered, without its secret, and where it delivers to."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    secret: SkipJsonSchema[str] = Field(default="", exclude=True)  # never answered again
    target: Target


class SubscriptionListed(SubscriptionView):
    state: str | None = Field(description="active, paused, disabled or cancelled.")


class SubscriptionCreated(SubscriptionView):
    state: Literal["active"]
    secret: str | None = Field(  # type: ignore[assignment]  # shown here, and only here
        description="The webhook signing secret, shown this once; null for pull and forward "
        "subscriptions (nothing to sign)."
    )


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionListed]


class SubscriptionStateChanged(BaseModel):
    subscription_id: str
    state: SubscriptionState


class SubscriptionCounts(BaseModel):
    delivered: int
    retried: int
    dead_lettered: int
    forwarded: int
    filtered_out: int
    undecodable: int
    undecryptable: int
    duplicates_skipped: int
    replayed: int
    dispatcher_starts: int


class SubscriptionStatus(BaseModel):
    subscription_id: str
    subscription_name: str
    tenant_id: str
    state: str = Field(description="active, paused, disabled, cancelled, or unknown.")
    target: Target
    delivery_mode: DeliveryMode
    counts: SubscriptionCounts
    lag: int
    partitions: list[PartitionLag]
    last_error: str | None
    last_error_at: str | None
    dispatchers_running: int
    dispatcher_restarts: int


class DeadLetter(BaseModel):
    """A dead-lettered delivery: its offset in the dead-letter topic, then the record the
    dispatcher wrote (subscription_id, webhook_id, event, value_b64, key, error, http_status,
    attempts, first_attempt_at, last_attempt_at, dead_lettered_at, source)."""

    model_config = ConfigDict(extra="allow")

    dlq_offset: int


class DeadLetterPage(BaseModel):
    subscription_id: str
    dead_letter_topic: str
    dead_letters: list[DeadLetter]
    next_offset: int | None = Field(description="Pass it back as `offset`; null at the end.")


class DeadLettersReplayed(BaseModel):
    subscription_id: str
    replayed: int = Field(description="Dead letters sent again.")
