"""Partition owners: consume -> decode in bulk -> compute in Polars -> commit, for some partitions.

`PartitionOwner` is a plain class (unit-testable, usable without Ray); `PartitionOwnerActor` is
its thin Ray shell. One step reads a batch of records, turns each partition's values into one
Polars frame (no per-event Python decoding), runs that partition's stage (windows, a join or
patterns: pipelines.stages), and commits results, stage snapshots and next offsets in one fenced
Redis script (cluster.stores.pipelines). A restarted owner resumes from the last commit: nothing
lost, nothing counted twice.

Event time: every decoded record advances its partition's event time, selected or not; a
partition quiet for the spec's ``idle_timeout_ms`` advances it with the clock
(pipelines.event_time), committed like a batch so windows, intervals and deadlines fire.
A join whose right side is another stream reads the same partition of both topics; the right
topic's next offset rides in the stage snapshot. Pattern changes are picked up between steps,
i.e. at a commit boundary (at most every PATTERN_CHECK_S).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import defaultdict
from typing import Any

import orjson
import ray
from confluent_kafka import OFFSET_BEGINNING, Message, Producer, TopicPartition
from redis import Redis

from actors.owner_input import InputDecoder
from cluster import naming
from cluster.errors import Fenced
from cluster.kafka.clients import committed_offsets, new_consumer, producer_config
from cluster.models.pipelines import PipelineRecord
from cluster.observability import metrics, tracing
from cluster.observability.setup import setup_process
from cluster.security.event_crypto import stream_cipher
from cluster.settings import Settings, get_settings
from cluster.stores.pipelines import Commit, PipelineStore
from pipelines.event_time import IdleClock
from pipelines.pattern_spec import PatternSpec
from pipelines.stages import PatternStage, Stage, build_stage

MAX_BATCH = 20_000
PATTERN_CHECK_S = 1.0
IDLE_CHECK_S = 1.0


class PartitionOwner:
    """Owns `partitions` of the pipeline's topic from construction until fenced or closed."""

    def __init__(self, settings: Settings, record: PipelineRecord, partitions: list[int]) -> None:
        self.record = record
        self.spec = record.spec
        self.partitions = sorted(partitions)
        self.store = PipelineStore(
            Redis.from_url(settings.redis), record.pipeline_id, self.partitions
        )
        self.epochs = self.store.claim(self.partitions)  # fences every earlier owner
        self.stopping = threading.Event()  # set by the coordinator to move this owner
        self.stepped_at = time.monotonic()  # the coordinator's watchdog reads it
        self.stages: dict[int, Stage] = {}
        self.next_offsets: dict[int, int] = {}
        self.inputs = {record.kafka_topic: 0}
        if record.right_topic is not None:
            self.inputs[record.right_topic] = 1
        self.idle: dict[tuple[int, int], IdleClock] = {}
        start, now_ms = [], _now_ms()
        for p in self.partitions:
            checkpoint = self.store.checkpoint(p)
            stage = self.stages[p] = build_stage(self.spec, checkpoint.state)
            offset = checkpoint.offset if checkpoint.offset is not None else OFFSET_BEGINNING
            self.next_offsets[p] = offset
            start.append(TopicPartition(record.kafka_topic, p, offset))
            if record.right_topic is not None:
                right = stage.extra_offsets[0] if stage.extra_offsets else None
                start.append(TopicPartition(record.right_topic, p, right or OFFSET_BEGINNING))
            for i in range(len(self.inputs)):
                clock = self.idle[(p, i)] = IdleClock(self.spec.idle_timeout_ms)
                mark = stage.watermark_ms  # resumed: idle time counts from where it stood
                newest = None if mark is None else mark + self.spec.allowed_lateness_ms
                clock.observe(newest, now_ms)
        self.patterns_version, self._patterns_applied = 1, False
        self._next_pattern_check = self._next_idle_check = 0.0
        self._apply_pattern_changes()
        self.consumer = new_consumer(
            settings, record.consumer_group, **{"fetch.max.bytes": 64 * 1024 * 1024}
        )
        self.consumer.assign(start)
        self.lag = metrics.LagReporter(record.tenant_id, record.consumer_group)
        self.cipher = stream_cipher(settings, record.encrypted, record.tenant_id, record.stream_id)
        self.decoder = InputDecoder(self.spec, record.pipeline_id, self.cipher)
        self.output: Producer | None = None
        if record.output_topic is not None:
            # One transactional id per partition set: a successor's init fences this producer.
            txn_id = naming.owner_transactional_id(
                record.tenant_id, record.pipeline_id, self.store.owner_key
            )
            self.output = Producer(producer_config(settings, **{"transactional.id": txn_id}))
            self.output.init_transactions(60)
            self._finish_outbox()

    def step(self, timeout_s: float = 0.5) -> int:
        """One consume-process-commit cycle; answers how many records it consumed."""
        # Wait for the first record only, then take what is already fetched: consume(N, t) would
        # wait for N records or the whole timeout, adding up to `timeout_s` to every window.
        self.lag.maybe_report(self.consumer)
        self._apply_pattern_changes()
        first = self.consumer.consume(1, timeout_s)
        started = time.perf_counter()
        fetched = first + self.consumer.consume(MAX_BATCH - 1, 0) if first else []
        messages = [m for m in fetched if m.error() is None]
        span = tracing.start_continued("pipeline.step", messages[0].headers() if messages else None)
        by_partition: dict[int, dict[int, list[Message]]] = defaultdict(lambda: defaultdict(list))
        for m in messages:
            by_partition[m.partition() or 0][self.inputs.get(m.topic() or "", 0)].append(m)
        commit = Commit(results=[], positions={}, progress={}, dead_letters=[], retracted=[])
        now_ms = _now_ms()
        for p, batches in by_partition.items():
            self._process(p, batches, commit, now_ms)
        if time.monotonic() >= self._next_idle_check:
            self._next_idle_check = time.monotonic() + IDLE_CHECK_S
            for p in self.partitions:
                if p not in by_partition:
                    self._advance_idle(p, commit, now_ms)
        if not commit.positions:
            span.end()  # an empty poll: nothing to trace, but no span left open
            return 0
        if self.output is not None:
            commit.outbox = _outbox(commit, self._right_offsets(commit))
        commit.store_results = self.spec.sinks.redis
        self.store.commit(self.epochs, commit)
        if self.output is not None:
            self._publish(commit.outbox)
        span.end()
        metrics.record_pipeline_step(
            self.record.tenant_id,
            self.record.pipeline_id,
            len(commit.results),
            commit.progress,
            time.perf_counter() - started,
        )
        return len(messages)

    def _publish(self, outbox: bytes) -> None:
        """The outbox's results and source offsets in one Kafka transaction, then clear it."""
        assert self.output is not None and self.record.output_topic is not None
        box = orjson.loads(outbox)
        self.output.begin_transaction()
        for key, value in box["records"]:
            self.output.produce(self.record.output_topic, value.encode(), key.encode())
        offsets = [
            TopicPartition(topic, int(p), offset)
            for topic, positions in self._outbox_offsets(box).items()
            for p, offset in positions.items()
        ]
        self.output.send_offsets_to_transaction(
            offsets, self.consumer.consumer_group_metadata(), 60
        )
        self.output.commit_transaction(60)
        self.store.clear_outbox()

    def _finish_outbox(self) -> None:
        """Publish what a predecessor committed to Redis but may not have published."""
        outbox = self.store.outbox()
        if outbox is None:
            return
        box = orjson.loads(outbox)
        positions = self._outbox_offsets(box)
        wanted = [TopicPartition(t, int(p)) for t, offsets in positions.items() for p in offsets]
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in committed_offsets(self.consumer, wanted)
        }
        if all(
            committed.get((t, int(p)), -1) >= off
            for t, offsets in positions.items()
            for p, off in offsets.items()
        ):
            self.store.clear_outbox()  # its transaction did commit
        else:
            self._publish(outbox)

    def _outbox_offsets(self, box: dict[str, Any]) -> dict[str, dict[str, int]]:
        """topic -> partition -> next offset of an outbox (a join's right topic too)."""
        found = {self.record.kafka_topic: box["offsets"]}
        if self.record.right_topic is not None and box.get("right_offsets"):
            found[self.record.right_topic] = box["right_offsets"]
        return found

    def _right_offsets(self, commit: Commit) -> dict[int, int]:
        """The right topic's next offsets of the partitions this step commits."""
        return {
            p: offset
            for p in commit.positions
            for offset in self.stages[p].extra_offsets[:1]
            if offset is not None
        }

    def _process(
        self, partition: int, batches: dict[int, list[Message]], commit: Commit, now_ms: int
    ) -> None:
        stage = self.stages[partition]
        frames, seen, dead = [], [], list[dict[str, Any]]()
        counters: dict[str, int] = defaultdict(int)
        for i in range(stage.inputs):
            batch = batches.get(i, [])
            selected, newest = self.decoder.select(partition, batch, i, dead, counters)
            if batch:
                self.idle[(partition, i)].observe(newest, now_ms)
            frames.append(selected)
            seen.append(newest)
        if stage.inputs > 1:  # a quiet side of a join still moves on (see _with_idle_inputs)
            seen = self._with_idle_inputs(partition, seen, now_ms)
        out = stage.process(frames, seen)
        base = {"pipeline_id": self.record.pipeline_id, "partition": partition}
        commit.dead_letters += dead + [
            {**base, "reason": "late", **row} for row in self.decoder.dead_rows(out.late)
        ]
        for name, value in out.counters.items():
            counters[name] += value
        if 1 in batches:
            stage.extra_offsets[0] = (batches[1][-1].offset() or 0) + 1
        if 0 in batches:
            self.next_offsets[partition] = (batches[0][-1].offset() or 0) + 1
        self._commit_stage(partition, out.results, out.retracted, dict(counters), commit)

    def _commit_stage(
        self,
        partition: int,
        results: list[dict[str, Any]],
        retracted: list[dict[str, Any]],
        counters: dict[str, int],
        commit: Commit,
    ) -> None:
        commit.results += [{"pipeline_id": self.record.pipeline_id, **doc} for doc in results]
        commit.retracted += retracted
        commit.progress[partition] = counters
        stage = self.stages[partition]
        commit.positions[partition] = (self.next_offsets[partition], stage.snapshot())

    def _advance_idle(self, partition: int, commit: Commit, now_ms: int) -> None:
        """A quiet partition: event time follows the clock (see pipelines.event_time)."""
        stage = self.stages[partition]
        seen = self._with_idle_inputs(partition, [None] * stage.inputs, now_ms)
        if all(s is None for s in seen):
            return
        empty = self.decoder.select(partition, [], 0, [], defaultdict(int))[0]
        out = stage.process([empty] * stage.inputs, seen)
        counters = {**out.counters, "idle_advances": 1}
        self._commit_stage(partition, out.results, out.retracted, counters, commit)

    def _with_idle_inputs(
        self, partition: int, seen: list[int | None], now_ms: int
    ) -> list[int | None]:
        """``seen`` with each input that delivered nothing filled in from its idle clock. An
        idle input that never delivered an event must not hold a join back forever: like an
        idle source in Flink it stops counting, i.e. it follows the other input."""
        clocks = [self.idle[(partition, i)] for i in range(len(seen))]
        filled = [
            s if s is not None else c.idle_event_time(now_ms)
            for s, c in zip(seen, clocks, strict=True)
        ]
        known = [s for s in filled if s is not None]
        if not known:
            return filled
        top = max(known)
        return [
            top if s is None and c.is_idle(now_ms) else s
            for s, c in zip(filled, clocks, strict=True)
        ]

    def _apply_pattern_changes(self) -> None:
        """Run the latest stored pattern set (checked between steps: a commit boundary)."""
        if self.spec.patterns is None or time.monotonic() < self._next_pattern_check:
            return
        self._next_pattern_check = time.monotonic() + PATTERN_CHECK_S
        found = self.store.patterns()
        version = 1 if found is None else found[0]
        if self._patterns_applied and version == self.patterns_version:
            return
        patterns = self.spec.patterns
        if found is not None:
            patterns = [PatternSpec.model_validate(p) for p in found[1]]
        for stage in self.stages.values():
            assert isinstance(stage, PatternStage)
            stage.replace_patterns(patterns)  # unchanged patterns keep their state
        self.patterns_version, self._patterns_applied = version, True
        self.store.report_patterns_version(version)

    def run(self) -> str:
        """Step until fenced or stopped (an empty step already waited in consume); answers why
        it ended. A stop takes effect between steps, i.e. right after a commit."""
        try:
            while not self.stopping.is_set():
                self.step()
                self.stepped_at = time.monotonic()
            return "stopped"
        except Fenced:
            return "fenced"
        finally:
            self.close()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            self.consumer.close()
        if self.output is not None:
            self.output.flush(10)  # nothing pending outside a transaction; releases the client


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=2)  # type: ignore[call-overload]
class PartitionOwnerActor:
    """The Ray shell: constructs the owner in the actor's process and runs it."""

    def __init__(self, record: dict[str, Any], partitions: list[int]):
        # Settings come from the job's runtime_env (cluster.settings.worker_env), one way.
        setup_process(get_settings(), "partition_owner")
        self.owner = PartitionOwner(
            get_settings(), PipelineRecord.model_validate(record), partitions
        )

    def run(self) -> str:
        return self.owner.run()

    def stop(self) -> None:
        """Ask run() to end after its current step (run() answers "stopped")."""
        self.owner.stopping.set()

    def idle_s(self) -> float:
        """Seconds since the owner last finished a step (an idle one takes under a second)."""
        return time.monotonic() - self.owner.stepped_at

    def where(self) -> tuple[str, int]:
        """This owner's Ray node id and process id."""
        return ray.get_runtime_context().get_node_id(), os.getpid()

    def pid(self) -> int:
        return os.getpid()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _outbox(commit: Commit, right_offsets: dict[int, int]) -> bytes:
    """The step's output records (keyed by window: a compacted topic keeps the latest revision)
    and the source offsets they came from (a two-stream join's right topic's as well)."""
    return orjson.dumps(
        {
            "offsets": {
                str(p): offset for p, (offset, _) in commit.positions.items() if offset >= 0
            },
            "right_offsets": {str(p): offset for p, offset in right_offsets.items()},
            "records": [[member, raw.decode()] for member, raw in commit.documents],
        }
    )
