"""EventIndexer: reads every stream topic of every tenant once and keeps the event store's
indexes (cluster.stores.event_index, cluster.stores.aggregates) in Redis.

One loop: consume up to `batch_size` records from the regex subscription to every `esb.<tenant>.`
topic -> keep the records of registered streams with event_store on (a dead-letter or pipeline
topic, or a stream that opted out, is skipped, its offsets committed all the same) -> one
pipelined Redis round trip with every index write, the aggregate versions (OBSERVE) and the
per-partition progress -> commit the Kafka offsets, synchronously, only after Redis answered.
A crash between the two replays the batch, which rewrites the same entries (idempotent).
Arrow-batched records are indexed per event.

Durability: Redis runs with AOF (appendfsync everysec on the local stack), so an index write
that Redis answered survives a Redis restart less up to one second; the offsets commit after
that answer. A lost second is repaired by a rebuild.

Rebuild: bump `esb:indexer:generation` (a fresh consumer group reads every topic from the
start), drop the index keys, start again; see EventStoreService.rebuild_indexes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from redis import Redis

from cluster import naming
from cluster.kafka.clients import new_consumer
from cluster.models.streams import StreamRecord
from cluster.settings import Settings
from cluster.stores import aggregates
from cluster.stores.event_index import (
    IndexedEvent,
    event_time_ms,
    queue_progress,
    queue_writes,
)
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from pipelines.envelope import decode
from pipelines.event_frames import VERSION_ATTRIBUTE

log = logging.getLogger("esb.indexer")
STREAMS_REFRESH_S = 5.0  # how soon a stream's event_store flag change is seen


def record_events(msg: Message, stream: StreamRecord) -> list[IndexedEvent]:
    """The events of one Kafka record of `stream` (none for a record that is no CloudEvent)."""
    value = msg.value() or b""
    partition, offset = msg.partition() or 0, msg.offset() or 0
    kafka_ms = msg.timestamp()[1]
    try:
        events = to_cloudevents(value) if is_arrow_batch(msg.headers()) else [decode(value)]
    except Exception:  # another client's record: nothing to index, never a stuck indexer
        return []
    found = []
    for index, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            continue
        time_ms = event_time_ms(event, kafka_ms)
        found.append(
            IndexedEvent(
                stream.tenant_id, stream.stream_id, partition, offset, index, time_ms, event
            )
        )
    return found


class EventIndexer:
    """The plain class inside actors.indexer.IndexerActor (also runnable in a thread)."""

    def __init__(self, settings: Settings, *, batch_size: int = 5000) -> None:
        self.settings, self.batch_size = settings, batch_size
        self.redis = Redis.from_url(settings.redis, socket_timeout=30)
        self.generation = int(self.redis.get(naming.INDEXER_GENERATION) or 0)
        self._observe = self.redis.register_script(aggregates.OBSERVE)
        self._topics: dict[str, StreamRecord] = {}
        self._not_streams: set[str] = set()  # topics seen that no stream had at the last refresh
        self._refreshed_at = 0.0
        self._positions: dict[tuple[str, int], int] = {}  # the caught-up positions written
        self.indexed = 0
        self.consumer = self._subscribe()

    def _subscribe(self) -> Consumer:
        consumer = new_consumer(
            self.settings,
            naming.indexer_group(self.generation),
            **{"topic.metadata.refresh.interval.ms": 1000, "enable.partition.eof": False},
        )
        consumer.subscribe([naming.STREAM_TOPICS_PATTERN])
        return consumer

    def _refresh_streams(self) -> None:
        members: Any = self.redis.smembers(naming.ALL_STREAMS)
        ids = sorted(m.decode() for m in members)
        raws: Any = self.redis.mget([naming.stream_key(i) for i in ids]) if ids else []
        records = [StreamRecord.model_validate_json(raw) for raw in raws if raw]
        self._topics = {r.kafka_topic: r for r in records}
        self._not_streams.clear()
        self._refreshed_at = time.monotonic()

    def run_once(self, timeout_s: float = 0.5) -> int:
        """One batch: index, then commit. Answers the number of events indexed."""
        batch = self.consumer.consume(num_messages=self.batch_size, timeout=timeout_s)
        if not batch:
            self._caught_up()
            return 0
        stale = time.monotonic() > self._refreshed_at + STREAMS_REFRESH_S  # event_store flags
        unknown = {m.topic() or "" for m in batch if m.error() is None} - self._topics.keys()
        if stale or unknown - self._not_streams:
            self._refresh_streams()  # a stream created since: at most once per batch
        # A dead-letter, pipeline or foreign topic asks again only when the streams are stale:
        # a stream's record is saved before anything can be published to it.
        self._not_streams |= unknown - self._topics.keys()
        events: list[IndexedEvent] = []
        progress: dict[str, dict[int, int]] = defaultdict(dict)
        commits: dict[tuple[str, int], int] = {}
        for msg in batch:
            if msg.error() is not None:
                continue
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            commits[(topic, partition)] = offset + 1
            stream = self._topics.get(topic)
            if stream is None or not stream.event_store:
                continue
            events.extend(record_events(msg, stream))
            progress[stream.stream_id][partition] = offset + 1
        self._write(events, progress)
        if commits:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in commits.items()],
                asynchronous=False,
            )
        self.indexed += len(events)
        return len(events)

    def _caught_up(self) -> None:
        """Nothing left to read: progress is the consumer's position, which is past the
        transaction markers a transactional producer (exactly-once forwarding into a stream)
        leaves after its last record; else a partition would look one offset behind forever."""
        progress: dict[str, dict[int, int]] = defaultdict(dict)
        for tp in self.consumer.position(self.consumer.assignment()):
            stream = self._topics.get(tp.topic)
            if stream is None or not stream.event_store or tp.offset < 0:
                continue
            if self._positions.get((tp.topic, tp.partition)) != tp.offset:
                progress[stream.stream_id][tp.partition] = tp.offset
                self._positions[(tp.topic, tp.partition)] = tp.offset
        if progress:
            self._write([], progress)

    def _write(self, events: list[IndexedEvent], progress: dict[str, dict[int, int]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        queue_writes(pipe, events)
        versioned = [e for e in events if isinstance(e.event.get(VERSION_ATTRIBUTE), int)]
        for item in versioned:
            agg = aggregates.keys(
                item.tenant_id, str(item.event["aggregatetype"]), str(item.event["aggregateid"])
            )
            version = item.event[VERSION_ATTRIBUTE]
            self._observe(keys=agg, args=[version, item.event_id, item.stream_id], client=pipe)
        for stream_id, offsets in progress.items():
            queue_progress(pipe, stream_id, offsets)
        refused = sum(1 for answer in pipe.execute() if answer in (-1, -2))  # OBSERVE's refusals
        if refused:
            log.warning("%d aggregate version(s) refused (a gap or a clash)", refused)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # Redis or Kafka away: nothing committed; resume from the commits
                log.exception("indexer batch failed; resuming from the committed offsets")
                stop.wait(1.0)
                with contextlib.suppress(Exception):
                    self.consumer.close()
                self.consumer = self._subscribe()

    def close(self) -> None:
        self.consumer.close()
        self.redis.close()

    def status(self) -> dict[str, Any]:
        return {"generation": self.generation, "indexed": self.indexed}
