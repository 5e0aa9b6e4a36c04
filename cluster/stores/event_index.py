"""The event store's indexes in Redis: what Kafka cannot answer (an event by id, events by
type, aggregate, correlation id, user and event time). Kafka stays the log; everything here is
derived from the topics and rebuilt from them (cluster.services.indexing).

Keys (all under `esb:`; names from cluster.naming):

    esb:tenant:<t>:ev:<event_id>           hash stream id -> {"p", "o", "i", "t", "e"}: partition,
                                           offset, index inside an Arrow-batched record (0 for a
                                           JSON record), event time (epoch ms) and the CloudEvent
                                           as stored (still sealed on an encrypted stream)
    esb:stream:<s>:ix:time                 zset of every event of the stream, score = event time,
                                           member = position (`<partition:05>:<offset:019>:
                                           <index:06>:<event id>`; equal scores sort by member,
                                           i.e. by partition and offset)
    esb:stream:<s>:ix:type:<event type>    the same, one zset per event type
    esb:stream:<s>:ix:agg:<type>:<id>      ... per aggregate (type and id percent-encoded)
    esb:stream:<s>:ix:corr:<id>            ... per correlation id
    esb:stream:<s>:ix:user:<id>            ... per user id
    esb:stream:<s>:ix:progress             hash partition -> next offset the indexer has written

Every write is an idempotent overwrite (HSET, ZADD of the same member and score), so replaying
a topic, or the indexer and an aggregate append writing the same event, changes nothing.

Cost per event: the by-id hash (the CloudEvent's bytes plus ~100 bytes) and 2-5 zset entries of
~60-90 bytes each; see benchmarks/scenarios/event_store.py for a measured figure. Retention: the
index keeps an event until a rebuild; events Kafka's retention removed are dropped by the next
rebuild (`esb events rebuild-index`).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson

from cluster import naming
from pipelines.envelope import epoch_ms


@dataclass(frozen=True)
class IndexedEvent:
    """One event at its place in Kafka, as the indexes hold it."""

    tenant_id: str
    stream_id: str
    partition: int
    offset: int
    index: int  # inside an Arrow-batched record; 0 for a JSON record
    time_ms: int
    event: dict[str, Any]  # as stored: sealed on an encrypted stream

    @property
    def event_id(self) -> str:
        return str(self.event["id"])

    @property
    def member(self) -> str:
        return position_member(self.partition, self.offset, self.index, self.event_id)

    def stored(self) -> bytes:
        return orjson.dumps(
            {"p": self.partition, "o": self.offset, "i": self.index, "t": self.time_ms}
            | {"e": self.event}
        )

    @classmethod
    def from_stored(cls, tenant_id: str, stream_id: str, raw: bytes) -> IndexedEvent:
        doc = orjson.loads(raw)
        return cls(tenant_id, stream_id, doc["p"], doc["o"], doc["i"], doc["t"], doc["e"])


def position_member(partition: int, offset: int, index: int, event_id: str) -> str:
    return f"{partition:05d}:{offset:019d}:{index:06d}:{event_id}"


def event_id_of(member: str) -> str:
    return member.split(":", 3)[3]


def aggregate_value(aggregate_type: str, aggregate_id: str) -> str:
    return f"{quote(aggregate_type, safe='')}:{quote(aggregate_id, safe='')}"


def event_time_ms(event: dict[str, Any], fallback_ms: int) -> int:
    """The CloudEvent's `time` in epoch ms; the Kafka timestamp when it has none."""
    value = event.get("time")
    if not isinstance(value, str):
        return fallback_ms
    try:
        return epoch_ms(datetime.fromisoformat(value))
    except ValueError:
        return fallback_ms


def index_keys(stream_id: str, event: dict[str, Any]) -> list[str]:
    """Every query index zset an event belongs to."""
    keys = [_zset_key(stream_id, "time")]
    if isinstance(kind := event.get("type"), str):
        keys.append(_zset_key(stream_id, "type", kind))
    agg_type, agg_id = event.get("aggregatetype"), event.get("aggregateid")
    if isinstance(agg_type, str) and isinstance(agg_id, str):
        keys.append(_aggregate_zset_key(stream_id, agg_type, agg_id))
    if isinstance(corr := event.get("correlationid"), str):
        keys.append(_zset_key(stream_id, "corr", corr))
    if isinstance(user := event.get("userid"), str):
        keys.append(_zset_key(stream_id, "user", user))
    return keys


# Memoised: the events of an indexer batch name the same few zsets over and over, and building
# a key (joining, percent-encoding) is a large share of an event's index work.
@functools.lru_cache(maxsize=1 << 14)
def _zset_key(stream_id: str, kind: str, value: str = "") -> str:
    return naming.event_index_key(stream_id, kind, value)


@functools.lru_cache(maxsize=1 << 14)
def _aggregate_zset_key(stream_id: str, aggregate_type: str, aggregate_id: str) -> str:
    return naming.event_index_key(stream_id, "agg", aggregate_value(aggregate_type, aggregate_id))


def queue_writes(pipe: Any, events: Iterable[IndexedEvent]) -> None:
    """Queue the index writes of `events` on a Redis pipeline (sync or asyncio alike): one HSET
    per event, then one ZADD per index zset for the whole batch (every event's hash is queued
    before its zset entries, so a query never finds a member whose hash is not written)."""
    members: dict[str, dict[str, int]] = defaultdict(dict)
    for item in events:
        pipe.hset(naming.event_key(item.tenant_id, item.event_id), item.stream_id, item.stored())
        member = item.member
        for key in index_keys(item.stream_id, item.event):
            members[key][member] = item.time_ms
    for key, scores in members.items():
        pipe.zadd(key, scores)


async def read_stored(
    redis: Any, tenant_id: str, stream_id: str, event_ids: Sequence[str]
) -> list[bytes | None]:
    """The by-id entries (IndexedEvent.stored bytes) of `event_ids` in `stream_id`, in one
    round trip; None where an id has no entry in that stream."""
    async with redis.pipeline(transaction=False) as pipe:
        for event_id in event_ids:
            pipe.hget(naming.event_key(tenant_id, event_id), stream_id)
        found: list[bytes | None] = await pipe.execute()
    return found


def queue_progress(pipe: Any, stream_id: str, next_offsets: dict[int, int]) -> None:
    if next_offsets:
        pipe.hset(naming.event_index_key(stream_id, "progress"), mapping=next_offsets)
