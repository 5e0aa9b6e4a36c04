"""Partition owners: consume -> decode in bulk -> window in Polars -> commit, for some partitions.

`PartitionOwner` is a plain class (unit-testable, usable without Ray); `PartitionOwnerActor` is
its thin Ray shell. One step reads a batch of records, turns each partition's values into one
Polars frame (no per-event Python decoding), runs that partition's window operator, and commits
results, operator snapshots and next offsets in one fenced Redis script (cluster.stores.pipelines).
A restarted owner resumes from the last commit: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from typing import Any

import orjson
import polars as pl
import ray
from confluent_kafka import OFFSET_BEGINNING, Message, Producer, TopicPartition
from redis import Redis

from cluster import naming
from cluster.errors import Fenced
from cluster.kafka.clients import committed_offsets, new_consumer, producer_config
from cluster.models.pipelines import PipelineRecord
from cluster.security.event_crypto import stream_cipher
from cluster.settings import Settings, get_settings
from cluster.stores.pipelines import Commit, PipelineStore
from pipelines.arrow_batch import decode_batch, is_arrow_batch
from pipelines.decode import decode_cloudevents_lenient, filter_event_types, with_window_key
from pipelines.windows import WindowDefinition, WindowOperator

MAX_BATCH = 20_000
RECORD_KEY = "__record_key"


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
        definition = WindowDefinition.from_spec(self.spec)
        self.operators: dict[int, WindowOperator] = {}
        start = []
        for p in self.partitions:
            checkpoint = self.store.checkpoint(p)
            self.operators[p] = WindowOperator.build(definition, resume_state=checkpoint.state)
            offset = checkpoint.offset if checkpoint.offset is not None else OFFSET_BEGINNING
            start.append(TopicPartition(record.kafka_topic, p, offset))
        self.consumer = new_consumer(
            settings, record.consumer_group, **{"fetch.max.bytes": 64 * 1024 * 1024}
        )
        self.consumer.assign(start)
        self.cipher = stream_cipher(settings, record.encrypted, record.tenant_id, record.stream_id)
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
        first = self.consumer.consume(1, timeout_s)
        if not first:
            return 0
        fetched = first + self.consumer.consume(MAX_BATCH - 1, 0)
        messages = [m for m in fetched if m.error() is None]
        if not messages:
            return 0
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for m in messages:
            by_partition[m.partition() or 0].append(m)
        commit = Commit(results=[], positions={}, progress={}, dead_letters=[], retracted=[])
        for p, batch in by_partition.items():
            self._process(p, batch, commit)
        if self.output is not None:
            commit.outbox = _outbox(commit)
        commit.store_results = self.spec.sinks.redis
        self.store.commit(self.epochs, commit)
        if self.output is not None:
            self._publish(commit.outbox)
        return len(messages)

    def _publish(self, outbox: bytes) -> None:
        """The outbox's results and source offsets in one Kafka transaction, then clear it."""
        assert self.output is not None and self.record.output_topic is not None
        box = orjson.loads(outbox)
        self.output.begin_transaction()
        for key, value in box["records"]:
            self.output.produce(self.record.output_topic, value.encode(), key.encode())
        offsets = [
            TopicPartition(self.record.kafka_topic, int(p), offset)
            for p, offset in box["offsets"].items()
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
        wanted = [TopicPartition(self.record.kafka_topic, int(p)) for p in box["offsets"]]
        committed = {tp.partition: tp.offset for tp in committed_offsets(self.consumer, wanted)}
        if all(committed.get(int(p), -1) >= off for p, off in box["offsets"].items()):
            self.store.clear_outbox()  # its transaction did commit
        else:
            self._publish(outbox)

    def _process(self, partition: int, batch: list[Message], commit: Commit) -> None:
        frame, rejected, undecryptable = self._decode(batch)
        selected = filter_event_types(frame, self.spec.event_types)
        if self.spec.time == "processing":
            now_ms = int(time.time() * 1000)
            selected = selected.with_columns(pl.lit(now_ms, pl.Int64).alias("event_time_ms"))
        typed = with_window_key(selected, self.spec.key)
        selected = typed.drop_nulls("key")
        no_key = typed.height - selected.height  # the key field is missing: counted, not windowed
        misrouted = selected.clear()
        if self.spec.key_field is not None:
            # A payload key is only correct when each key lives in one partition: publishers set
            # partition_key to the field's value. Anything else is dead-lettered, never merged.
            wrong = pl.col("key").cast(pl.String) != pl.col(RECORD_KEY)
            misrouted, selected = selected.filter(wrong), selected.filter(~wrong)
        operator = self.operators[partition]
        out = operator.process(selected.drop(RECORD_KEY))
        base = {"pipeline_id": self.record.pipeline_id, "partition": partition}
        pipeline = pl.lit(self.record.pipeline_id).alias("pipeline_id")
        commit.results += out.results.select(pipeline, pl.all()).to_dicts()
        commit.retracted += out.retracted.to_dicts()
        commit.dead_letters += (
            [{**base, "reason": "late", **row} for row in self._dead_rows(out.late)]
            + [{**base, "reason": "undecodable", "offset": offset} for offset in rejected]
            + [
                {**base, "reason": "undecryptable", "offset": offset, "error": why}
                for offset, why in undecryptable
            ]
            + [
                {
                    **base,
                    "reason": f"misrouted: publish with partition_key = {self.spec.key}",
                    **row,
                }
                for row in self._dead_rows(misrouted.drop(RECORD_KEY))
            ]
        )
        counters = out.counters.as_dict()
        counters["records_in"] = len(batch)
        counters["filtered_out"] = frame.height - typed.height
        counters["no_key"] = no_key
        counters["undecodable"] = len(rejected)
        counters["undecryptable"] = len(undecryptable)
        counters["misrouted"] = misrouted.height
        commit.progress[partition] = counters
        commit.positions[partition] = ((batch[-1].offset() or 0) + 1, operator.snapshot())

    def _dead_rows(self, rows: pl.DataFrame) -> list[dict[str, Any]]:
        """Dead-letter rows; an encrypted stream's keep only envelope columns, so no payload
        value lands in Redis in clear (the record stays findable by id and time)."""
        if self.cipher is not None and not rows.is_empty():
            payload = [*self.spec.fields, *(["key"] if self.spec.key_field else [])]
            rows = rows.drop([c for c in payload if c in rows.columns])
        return rows.to_dicts()

    def _decode(
        self, batch: list[Message]
    ) -> tuple[pl.DataFrame, list[int], list[tuple[int, str]]]:
        """One partition's records as one frame with each event's record key: Arrow-batched
        records read as Arrow, CloudEvents JSON parsed in bulk (decrypted first when the stream
        is encrypted). Answers the undecodable offsets, and the undecryptable ones with why."""
        fields = self.spec.fields
        plain = [m for m in batch if not is_arrow_batch(m.headers())]
        values = [m.value() or b"" for m in plain]
        undecryptable: list[tuple[int, str]] = []
        if self.cipher is not None:  # once per batch: plain streams skip this entirely
            values, failed = self.cipher.open_values(values)
            if failed:
                undecryptable = [(plain[i].offset() or 0, why) for i, why in failed]
                skip = {i for i, _ in failed}
                plain = [m for i, m in enumerate(plain) if i not in skip]
                values = [v for i, v in enumerate(values) if i not in skip]
        frame, rejected = decode_cloudevents_lenient(values, fields)
        skip = set(rejected)
        keys = pl.Series(
            RECORD_KEY, [m.key() for i, m in enumerate(plain) if i not in skip], pl.Binary
        )
        frames = [frame.with_columns(keys.cast(pl.String, strict=False))]
        bad = [plain[i].offset() or 0 for i in rejected]
        for m in batch:
            if is_arrow_batch(m.headers()):
                try:
                    arrow = decode_batch(m.value() or b"", fields)
                except (pl.exceptions.PolarsError, OSError):
                    bad.append(m.offset() or 0)
                    continue
                frames.append(arrow.rename({"partition_key": RECORD_KEY}))
        return pl.concat(frames, how="vertical_relaxed"), bad, undecryptable

    def run(self) -> str:
        """Step until fenced (an empty step already waited in consume); answers why it ended."""
        try:
            while True:
                self.step()
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
        self.owner = PartitionOwner(
            get_settings(), PipelineRecord.model_validate(record), partitions
        )

    def run(self) -> str:
        return self.owner.run()

    def pid(self) -> int:
        return os.getpid()


def _outbox(commit: Commit) -> bytes:
    """The step's output records (keyed by window: a compacted topic keeps the latest revision)
    and the source offsets they came from."""
    return orjson.dumps(
        {
            "offsets": {str(p): offset for p, (offset, _) in commit.positions.items()},
            "records": [[member, raw.decode()] for member, raw in commit.documents],
        }
    )
