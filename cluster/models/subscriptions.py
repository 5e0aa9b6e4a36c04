"""Subscriptions: their config (as in the product quick start), retry policy, what the registry
stores, and the event filter the dispatcher applies. Pure: no I/O, no Ray.

>>> config = SubscriptionConfig(subscription_name="notify", stream_id="user_events",
...     consumer_group_id="notifications", consumer_name="notifier",
...     event_type_patterns=["user.*"], webhook_url="https://hooks.example.com/esb")
>>> config.delivery_mode, config.retry_policy.max_attempts
('at_least_once', 8)
>>> EventFilter(config).matches({"type": "user.created", "aggregateid": "u1"})
True
>>> EventFilter(config).matches({"type": "order.created"})
False
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cluster import naming
from pipelines.decode import globs_regex
from pipelines.envelope import MAX_OFFSET, MAX_TIME_MS

DeliveryMode = Literal["at_most_once", "at_least_once", "exactly_once"]
StartPosition = Literal["earliest", "latest", "offset", "timestamp"]
SubscriptionState = Literal["active", "paused", "disabled", "cancelled"]
_GROUP = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"


class RetryPolicy(BaseModel):
    """Exponential backoff with full jitter: before attempt n+1 the dispatcher waits a random
    time in [0, min(max_backoff_ms, initial_backoff_ms * 2**(n-1))]. An event is dead-lettered
    after `max_attempts` attempts, or once `max_age_ms` passed since its first attempt.

    >>> RetryPolicy(initial_backoff_ms=100, max_backoff_ms=1000).bound_ms(1)
    100
    >>> RetryPolicy(initial_backoff_ms=100, max_backoff_ms=1000).bound_ms(5)
    1000
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=8, ge=1, le=100)
    initial_backoff_ms: int = Field(default=500, ge=1, le=3_600_000)
    max_backoff_ms: int = Field(default=60_000, ge=1, le=24 * 3_600_000)
    max_age_ms: int = Field(default=24 * 3_600_000, ge=1, le=7 * 24 * 3_600_000)

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.max_backoff_ms < self.initial_backoff_ms:
            raise ValueError("max_backoff_ms must be at least initial_backoff_ms")
        return self

    def bound_ms(self, attempt: int) -> int:
        """The longest wait after failed attempt number `attempt` (1-based)."""
        return int(min(self.max_backoff_ms, self.initial_backoff_ms * 2 ** min(attempt - 1, 40)))

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        """Full jitter: uniform in [0, bound_ms(attempt)]."""
        return int((rng or random).uniform(0, self.bound_ms(attempt)))


class SubscriptionConfig(BaseModel):
    """What to deliver, where, and how. Exactly one target: `webhook_url` (HTTP POST per event),
    `forward_to` (another stream of the tenant, Kafka to Kafka), or neither (consume in-process
    with `SubscriptionService.events`)."""

    model_config = ConfigDict(extra="forbid")

    subscription_name: str = Field(min_length=1, max_length=128)
    stream_id: str = Field(min_length=1, max_length=128, description="A stream id or name.")
    consumer_group_id: str = Field(min_length=1, max_length=128, pattern=_GROUP)
    consumer_name: str = Field(default="dispatcher", min_length=1, max_length=64, pattern=_GROUP)
    event_type_patterns: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=64,
        description="Globs: '*' matches any run of characters (dots too), '?' one.",
    )
    aggregate_ids: list[str] = Field(default_factory=list, max_length=1000, description="Globs.")
    aggregate_types: list[str] = Field(default_factory=list, max_length=64, description="Globs.")
    webhook_url: str | None = Field(default=None, max_length=2048)
    forward_to: str | None = Field(
        default=None, max_length=128, description="A stream (id or name) of the same tenant."
    )
    delivery_mode: DeliveryMode = "at_least_once"
    start_position: StartPosition = "latest"
    start_offset: int | None = Field(default=None, ge=0, le=MAX_OFFSET)
    start_time_ms: int | None = Field(default=None, ge=0, lt=MAX_TIME_MS)
    batch_size: int = Field(default=100, ge=1, le=10_000, description="Records per poll/commit.")
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)

    @model_validator(mode="after")
    def _consistent(self) -> SubscriptionConfig:
        if self.webhook_url is not None and self.forward_to is not None:
            raise ValueError("give webhook_url or forward_to, not both")
        if (self.start_position == "offset") != (self.start_offset is not None):
            raise ValueError("start_offset goes with start_position 'offset' (and only with it)")
        if (self.start_position == "timestamp") != (self.start_time_ms is not None):
            raise ValueError(
                "start_time_ms goes with start_position 'timestamp' (and only with it)"
            )
        for pattern in (*self.event_type_patterns, *self.aggregate_ids, *self.aggregate_types):
            if not pattern or len(pattern) > 256:
                raise ValueError("patterns must be 1-256 characters")
        return self

    @property
    def target(self) -> Literal["webhook", "kafka", "pull"]:
        if self.webhook_url is not None:
            return "webhook"
        return "kafka" if self.forward_to is not None else "pull"


class SubscriptionRecord(BaseModel):
    """A subscription as registered. `secret` never leaves the bus after creation."""

    model_config = ConfigDict(extra="ignore")

    subscription_id: str
    tenant_id: str
    config: SubscriptionConfig
    stream_id: str
    kafka_topic: str
    partitions: int
    group_id: str  # esb.<tenant>.<consumer_group_id>
    dead_letter_topic: str  # esb.<tenant>.sub.<id>.dlq
    retry_topic: str  # esb.<tenant>.sub.<id>.retry: DLQ replays come back through it
    output_topic: str | None = None  # forward_to's topic
    output_partitions: int = 1
    encrypted: bool = False  # the stream's: dispatchers decrypt before delivering
    secret: str
    created_by: str
    created_at: str
    dispatchers: int = 1

    def public(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json", exclude={"secret"})
        doc["target"] = self.config.target
        return doc

    def instance_id(self, index: int) -> str:
        """Static group membership: a restarted dispatcher takes its predecessor's place (and
        fences it) without a rebalance."""
        return f"{self.group_id}.{self.config.consumer_name}.{index}"

    def transactional_id(self, index: int) -> str:
        return naming.dispatcher_transactional_id(self.tenant_id, self.subscription_id, index)


def compile_globs(globs: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for any of the globs; None when everything matches (no globs, or a '*')."""
    if not globs or "*" in globs:
        return None
    return re.compile(globs_regex(globs), re.DOTALL)


class EventFilter:
    """Event type, aggregate id and aggregate type globs over a decoded CloudEvent."""

    def __init__(self, config: SubscriptionConfig) -> None:
        self._types = compile_globs(config.event_type_patterns)
        self._ids = compile_globs(config.aggregate_ids)
        self._kinds = compile_globs(config.aggregate_types)

    @property
    def everything(self) -> bool:
        return self._types is None and self._ids is None and self._kinds is None

    def matches(self, event: dict[str, Any]) -> bool:
        for pattern, field in (
            (self._types, "type"),
            (self._ids, "aggregateid"),
            (self._kinds, "aggregatetype"),
        ):
            if pattern is None:
                continue
            value = event.get(field)
            if not isinstance(value, str) or pattern.match(value) is None:
                return False
        return True
