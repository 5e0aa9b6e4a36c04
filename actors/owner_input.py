"""What a partition owner does with one input's records before its stage sees them: decrypt,
decode in bulk (CloudEvents JSON or Arrow batches), select by event type, key, and set aside
what cannot be processed (undecodable, undecryptable, misrouted) as dead letters.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import polars as pl
from confluent_kafka import Message

from cluster.security.event_crypto import EventCipher
from pipelines.arrow_batch import decode_batch, is_arrow_batch
from pipelines.decode import decode_cloudevents_lenient, filter_event_types, with_window_key
from pipelines.event_time import newest_time
from pipelines.spec import PipelineSpec

RECORD_KEY = "__record_key"


class InputDecoder:
    """One per owner: ``select`` turns a partition's records of one input into stage input."""

    def __init__(self, spec: PipelineSpec, pipeline_id: str, cipher: EventCipher | None) -> None:
        self.spec = spec
        self.pipeline_id = pipeline_id
        self.cipher = cipher
        self.correlation = spec.key == "correlation_id"
        # Only a key taken from elsewhere than the record key is checked against the record key.
        self.checks_routing = spec.key != "aggregate_id"

    def select(
        self,
        partition: int,
        batch: Sequence[Message],
        source: int,
        dead: list[dict[str, Any]],
        counters: dict[str, int],
    ) -> tuple[pl.DataFrame, int | None]:
        """One input's records decoded, filtered, keyed; answers them and their newest event
        time (of every decoded record: filtered-out ones advance event time too)."""
        frame, rejected, undecryptable = self.decode(batch)
        newest = newest_time(frame)
        # The pipeline's event_types select from its source stream; a join's right stream is
        # selected by join.right.event_types alone (in the stage).
        selected = filter_event_types(frame, self.spec.event_types) if source == 0 else frame
        if self.spec.time == "processing":
            now = int(time.time() * 1000)
            newest = now if batch else None
            selected = selected.with_columns(pl.lit(now, pl.Int64).alias("event_time_ms"))
        typed = with_window_key(selected, self.spec.key)
        selected = typed.drop_nulls("key")
        misrouted = selected.clear()
        if self.checks_routing:
            # A payload key is only correct when each key lives in one partition: publishers set
            # partition_key to the field's value. Anything else is dead-lettered, never merged.
            wrong = pl.col("key").cast(pl.String) != pl.col(RECORD_KEY)
            misrouted, selected = selected.filter(wrong), selected.filter(~wrong)
        base = {"pipeline_id": self.pipeline_id, "partition": partition}
        dead += (
            [{**base, "reason": "undecodable", "offset": offset} for offset in rejected]
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
                for row in self.dead_rows(misrouted.drop(RECORD_KEY))
            ]
        )
        counters["records_in"] += len(batch)
        counters["filtered_out"] += frame.height - typed.height
        counters["no_key"] += typed.height - selected.height - misrouted.height
        counters["undecodable"] += len(rejected)
        counters["undecryptable"] += len(undecryptable)
        counters["misrouted"] += misrouted.height
        return selected.drop(RECORD_KEY), newest

    def dead_rows(self, rows: pl.DataFrame) -> list[dict[str, Any]]:
        """Dead-letter rows; an encrypted stream's keep only envelope columns, so no payload
        value lands in Redis in clear (the record stays findable by id and time)."""
        if self.cipher is not None and not rows.is_empty():
            payload = [*self.spec.fields, *(["key"] if self.spec.key_field else [])]
            rows = rows.drop([c for c in payload if c in rows.columns])
        return rows.to_dicts()

    def decode(
        self, batch: Sequence[Message]
    ) -> tuple[pl.DataFrame, list[int], list[tuple[int, str]]]:
        """One partition's records as one frame with each event's record key: Arrow-batched
        records read as Arrow, CloudEvents JSON parsed in bulk (decrypted first when the stream
        is encrypted). Answers the undecodable offsets, and the undecryptable ones with why."""
        fields = self.spec.fields
        plain: list[Message] = []
        arrow: list[Message] = []
        for m in batch:  # one header look-up per record
            (arrow if is_arrow_batch(m.headers()) else plain).append(m)
        values = [m.value() or b"" for m in plain]
        undecryptable: list[tuple[int, str]] = []
        if self.cipher is not None:  # once per batch: plain streams skip this entirely
            values, failed = self.cipher.open_values(values)
            if failed:
                undecryptable = [(plain[i].offset() or 0, why) for i, why in failed]
                skip = {i for i, _ in failed}
                plain = [m for i, m in enumerate(plain) if i not in skip]
                values = [v for i, v in enumerate(values) if i not in skip]
        frame, rejected = decode_cloudevents_lenient(values, fields, correlation=self.correlation)
        record_keys: pl.Expr | pl.Series = pl.lit(None, pl.String).alias(RECORD_KEY)
        if self.checks_routing:  # the record keys are only read by the misrouting check
            skip = set(rejected)
            keys = [m.key() for i, m in enumerate(plain) if i not in skip]
            record_keys = pl.Series(RECORD_KEY, keys, pl.Binary).cast(pl.String, strict=False)
        frames = [frame.with_columns(record_keys)]
        bad = [plain[i].offset() or 0 for i in rejected]
        for m in arrow:
            try:
                events = decode_batch(m.value() or b"", fields, correlation=self.correlation)
            except (pl.exceptions.PolarsError, OSError):
                bad.append(m.offset() or 0)
                continue
            frames.append(events.rename({"partition_key": RECORD_KEY}))
        return pl.concat(frames, how="vertical_relaxed"), bad, undecryptable
