"""Replay frames from raw Kafka records (pipelines.event_frames) against the oracle of the
per-event path (frame_of over the CloudEvents one by one), and the replay's start positions
and argument checks (cluster.services.replay) with a fake consumer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

import orjson
import polars as pl
import pytest
from confluent_kafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.errors import InvalidInput
from cluster.kafka.clients import offsets_for_time
from cluster.services import replay as replay_module
from cluster.services.replay import ReplayStart, checked_batch_size, start_offsets
from pipelines.arrow_batch import to_batches, to_cloudevents
from pipelines.envelope import rfc3339_ms
from pipelines.event_frames import (
    FRAME_SCHEMA,
    VERSION_ATTRIBUTE,
    RawRecord,
    concat_frames,
    frame_of,
    records_frame,
)


def _event(n: int, data: Any, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e{n}",
        "type": "order.placed" if n % 2 else "order.paid",
        "time": rfc3339_ms(1_700_000_000_000 + n),
        "aggregateid": f"o{n % 3}",
        "aggregatetype": "Order",
        "userid": "u",
        "data": data,
        **extra,
    }


def _oracle_row(event: dict[str, Any], partition: int, offset: int) -> dict[str, Any]:
    data = event.get("data")
    return {
        "event_id": event["id"],
        "type": event.get("type"),
        "time": event.get("time"),
        "aggregate_type": event.get("aggregatetype"),
        "aggregate_id": event.get("aggregateid"),
        "version": event.get(VERSION_ATTRIBUTE),
        "correlation_id": event.get("correlationid"),
        "user_id": event.get("userid"),
        "stream_id": "s1",
        "partition": partition,
        "offset": offset,
        "data": data if isinstance(data, dict) else {},
    }


def _flat(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows with the payload fields by name (field order and all-null fields aside)."""
    rows = []
    for row in frame.to_dicts():
        data = {k: v for k, v in (row.pop("data") or {}).items() if v is not None and k != "_"}
        rows.append(row | {"data": data})
    return rows


def _arrow_records(amounts: list[float], partition: int, offset: int) -> tuple[bytes, list[Any]]:
    frame = pl.DataFrame(
        {
            "event_type": ["bulk"] * len(amounts),
            "source_capability": ["sdk"] * len(amounts),
            "aggregate_id": [f"b{i}" for i in range(len(amounts))],
            "aggregate_type": ["Bulk"] * len(amounts),
            "event_time": [2_000 + i for i in range(len(amounts))],
            "correlation_id": ["c1"] * len(amounts),
            "weight": amounts,
        }
    )
    ((_, value),) = to_batches(
        frame, tenant_id="t", stream_id="s1", user_id="u", partitions=1, now_ms=0, batch_id="b"
    )
    return value, [_oracle_row(e, partition, offset) for e in to_cloudevents(value)]


def test_json_and_arrow_records_give_the_per_event_frame() -> None:
    events = [_event(0, {"amount": 1}), _event(1, {"note": "x", "amount": 2.5}), _event(2, {})]
    events.append(_event(3, {"amount": 4}, **{VERSION_ATTRIBUTE: 7, "correlationid": "c"}))
    records = [RawRecord(0, i, 0, orjson.dumps(e), False) for i, e in enumerate(events)]
    value, arrow_rows = _arrow_records([0.5, 1.5], 1, 0)
    records.insert(1, RawRecord(1, 0, 0, value, True))  # arrives between JSON records
    frame = records_frame(records, "s1")
    oracle = frame_of([_oracle_row(e, 0, i) for i, e in enumerate(events)] + arrow_rows)
    assert frame.schema["time"] == FRAME_SCHEMA["time"]
    assert list(frame.columns) == [*FRAME_SCHEMA, "data"]
    assert _flat(frame) == _flat(oracle)
    assert frame.get_column("version").to_list() == [None, None, None, 7, None, None]
    assert frame.get_column("data").struct.fields == ["amount", "note", "weight"]


def test_records_that_are_no_cloudevents_are_left_out() -> None:
    good = orjson.dumps(_event(5, {"a": 1}))
    values = [b"not json", b"null", b'{"no": "id"}', b"", good, b'{"id": 3}']
    frame = records_frame([RawRecord(0, i, 0, v, False) for i, v in enumerate(values)], "s1")
    assert frame.select("event_id", "offset").rows() == [("e5", 4)]
    assert records_frame([], "s1").height == 0
    assert records_frame([RawRecord(0, 0, 0, b"junk", False)], "s1").schema == (
        records_frame([], "s1").schema
    )


def test_payload_fields_of_clashing_types_are_json_text() -> None:
    events = [_event(0, {"x": [1, 2]}), _event(1, {"x": 3, "y": "s"})]
    records = [RawRecord(0, i, 0, orjson.dumps(e), False) for i, e in enumerate(events)]
    data = records_frame(records, "s1").get_column("data")
    assert data.struct.field("x").to_list() == ["[1,2]", "3"]
    assert data.struct.field("y").to_list() == [None, "s"]


def test_frames_with_different_payloads_concatenate() -> None:
    one = records_frame([RawRecord(0, 0, 0, orjson.dumps(_event(0, {"a": 1})), False)], "s1")
    two = records_frame([RawRecord(0, 1, 0, orjson.dumps(_event(1, {"b": "x"})), False)], "s1")
    both = concat_frames([one, two, records_frame([], "s1")])
    assert both.get_column("data").struct.fields == ["a", "b"]
    assert both.get_column("data").struct.field("b").to_list() == [None, "x"]
    assert concat_frames([]).height == 0


payloads = st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.integers(-1000, 1000), max_size=3
) | st.sampled_from([{}, {"t": "text"}])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), payloads), max_size=30))
def test_bulk_decoding_agrees_with_the_per_event_oracle(
    spec: list[tuple[int, dict[str, Any]]],
) -> None:
    offsets = {0: 0, 1: 0, 2: 0}
    records, rows = [], []
    for n, (partition, data) in enumerate(spec):
        event = _event(n, data)
        records.append(RawRecord(partition, offsets[partition], 0, orjson.dumps(event), False))
        rows.append(_oracle_row(event, partition, offsets[partition]))
        offsets[partition] += 1
    rows.sort(key=lambda r: (r["partition"], r["offset"]))
    frame = records_frame(records, "s1")
    assert _flat(frame) == _flat(frame_of(rows))


class FakeConsumer:
    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> Any:
        return [
            TopicPartition(tp.topic, tp.partition, 5 if tp.partition == 0 else -1)
            for tp in partitions
        ]


MARKS = {0: (2, 10), 1: (0, 3)}


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (ReplayStart("earliest"), {0: 2, 1: 0}),
        (ReplayStart("latest"), {0: 10, 1: 3}),
        (ReplayStart("offset", offset=1), {0: 2, 1: 1}),
        (ReplayStart("offset", offset=7), {0: 7, 1: 3}),
        (ReplayStart("timestamp", time_ms=1_000), {0: 5, 1: 3}),
    ],
)
def test_start_positions_resolve_as_subscriptions_do(
    start: ReplayStart, expected: dict[int, int]
) -> None:
    def at_time(ms: int) -> dict[int, int]:
        return offsets_for_time(FakeConsumer(), "t", MARKS, ms)  # type: ignore[arg-type]

    assert start_offsets(MARKS, start, at_time) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sometime",), "start_position must be one of"),
        (("offset",), "start_offset goes with"),
        (("earliest", 3), "start_offset goes with"),
        (("timestamp",), "start_time_ms goes with"),
        (("latest", None, 5), "start_time_ms goes with"),
        (("offset", -1), "start_offset must be between"),
        (("timestamp", None, -5), "start_time_ms must be between"),
    ],
)
def test_bad_start_positions_say_what_to_fix(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ReplayStart(*args)


def test_batch_size_is_bounded() -> None:
    assert checked_batch_size(1) == 1
    with pytest.raises(InvalidInput, match="batch_size must be between"):
        checked_batch_size(0)


class FakeStreams:
    async def resolve(self, stream: str, tenant_id: str | None) -> str:
        return stream


class FakeBus:
    settings = topics = None
    streams = FakeStreams()

    def cipher(self, stream: Any) -> None:
        return None


class FakeReader:
    """Frames of one row each (every other poll empty); records whether a poll was running
    when it was closed."""

    made: ClassVar[list[FakeReader]] = []
    slow_poll: ClassVar[int | None] = None  # which poll waits for its gate

    def __init__(self, *args: Any) -> None:
        self.polls, self.polling, self.closed_mid_poll, self.closed = 0, False, False, False
        self.gate = threading.Event()
        FakeReader.made.append(self)

    @property
    def done(self) -> bool:
        return self.polls >= 6

    def next_frame(self, batch_size: int, event_types: Any) -> pl.DataFrame:
        self.polling = True
        if self.polls == FakeReader.slow_poll:
            self.gate.wait(5)  # a slow poll, to cancel the replay in
        self.polls += 1
        self.polling = False
        if self.polls % 2:
            return records_frame([], "s1")
        value = orjson.dumps(_event(self.polls, {"n": self.polls}))
        return records_frame([RawRecord(0, self.polls, 0, value, False)], "s1")

    def close(self) -> None:
        self.closed_mid_poll, self.closed = self.polling, True


def _replay(monkeypatch: pytest.MonkeyPatch, slow_poll: int | None = None) -> Any:
    monkeypatch.setattr(replay_module, "TopicReader", FakeReader)
    monkeypatch.setattr(FakeReader, "slow_poll", slow_poll)
    FakeReader.made.clear()
    return replay_module.replay(FakeBus(), "t", "s1", ReplayStart(), False, 10, None)  # type: ignore[arg-type]


def test_the_replay_yields_non_empty_frames_and_closes_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> list[list[str]]:
        frames = _replay(monkeypatch)
        return [f.get_column("event_id").to_list() async for f in frames]

    assert asyncio.run(run()) == [["e2"], ["e4"], ["e6"]]
    (reader,) = FakeReader.made
    assert reader.closed and not reader.closed_mid_poll


def test_a_cancelled_replay_closes_its_consumer_after_the_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        frames = _replay(monkeypatch, slow_poll=4)

        async def read() -> None:
            async for _ in frames:
                pass

        task = asyncio.create_task(read())
        while not (
            FakeReader.made and FakeReader.made[0].polling and FakeReader.made[0].polls == 4
        ):
            await asyncio.sleep(0.001)  # until the slow poll is running
        task.cancel()
        for _ in range(20):  # the cancellation reaches the replay's finally
            await asyncio.sleep(0)
        assert not task.done() and not FakeReader.made[0].closed  # it waits for the poll
        FakeReader.made[0].gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    (reader,) = FakeReader.made
    assert reader.closed and not reader.closed_mid_poll and reader.polls == 5
