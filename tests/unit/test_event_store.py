"""The event store's pure parts, without services: cursors, filters, index choice, positions,
times, merge patches, the replay frame, request validation and how records become entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cluster import naming
from cluster.errors import BadRequest, ServiceUnavailable
from cluster.models.event_store import AppendRequest, EventQuery, StoredEvent, merge_patch
from cluster.models.streams import StreamRecord
from cluster.services.event_store import (
    EventStoreService,
    _index_key,
    _matches,
    _row,
    decode_cursor,
    encode_cursor,
    frame_of,
)
from cluster.services.indexing import record_events
from cluster.stores.event_index import (
    IndexedEvent,
    event_id_of,
    event_time_ms,
    index_keys,
    position_member,
    queue_writes,
)
from pipelines.arrow_batch import FORMAT_HEADER, to_batches


def test_cursors_round_trip_and_foreign_ones_are_a_400() -> None:
    position = (1_700_000_000_123, "s1", position_member(2, 41, 0, "e:1"))
    assert decode_cursor(encode_cursor(position)) == position
    with pytest.raises(BadRequest):
        decode_cursor("not-a-cursor")


@given(st.lists(st.tuples(st.integers(0, 999), st.integers(0, 10**15), st.integers(0, 9999))))
def test_position_members_sort_like_their_numbers(positions: list[tuple[int, int, int]]) -> None:
    members = [position_member(p, o, i, "id") for p, o, i in positions]
    assert sorted(members) == [position_member(*x, "id") for x in sorted(positions)]


def test_event_times_are_exact_milliseconds() -> None:
    assert event_time_ms({"time": "1970-01-01T00:00:02.001Z"}, 0) == 2001
    assert event_time_ms({"time": "garbage"}, 7) == 7
    assert event_time_ms({}, 9) == 9
    q = EventQuery(from_time=datetime(1970, 1, 1, 0, 0, 2, 1000, tzinfo=UTC), to_time=5)
    assert q.window_ms() == (2001, 5)


EVENT = {
    "type": "order.paid",
    "aggregatetype": "Order",
    "aggregateid": "o1",
    "correlationid": "c1",
    "userid": "u1",
}


@pytest.mark.parametrize(
    ("filters", "matching"),
    [
        ({"event_types": ["order.*"]}, True),
        ({"event_types": ["user.*", "*.paid"]}, True),
        ({"event_types": ["order.placed"]}, False),
        ({"aggregate_id": "o1", "aggregate_type": "Order"}, True),
        ({"aggregate_id": "o2"}, False),
        ({"correlation_id": "c2"}, False),
        ({"user_id": "u1", "correlation_id": "c1"}, True),
    ],
)
def test_filters(filters: dict[str, Any], matching: bool) -> None:
    assert _matches(EVENT, EventQuery(**filters)) is matching


def test_the_most_selective_index_is_read() -> None:
    assert _index_key("s", EventQuery(aggregate_type="O", aggregate_id="1", user_id="u")).endswith(
        ":ix:agg:O%3A1"
    )
    assert _index_key("s", EventQuery(aggregate_id="1", user_id="u")).endswith(":ix:user:u")
    assert _index_key("s", EventQuery(event_types=["a.b"])).endswith(":ix:type:a.b")
    assert _index_key("s", EventQuery(event_types=["a.*"])).endswith(":ix:time")


def test_merge_patch_follows_rfc_7396() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
    assert merge_patch({"a": "foo"}, "bar") == "bar"


def test_append_requests_are_checked() -> None:
    with pytest.raises(ValidationError, match="expected_version"):
        AppendRequest(stream_id="s", expected_version=-1, events=[{"type": "a"}])
    with pytest.raises(ValidationError, match="differ"):
        AppendRequest(
            stream_id="s", events=[{"type": "a", "event_id": "x"}, {"type": "b", "event_id": "x"}]
        )
    with pytest.raises(ValidationError):
        AppendRequest(stream_id="s", expected_version="sometimes", events=[{"type": "a"}])
    assert AppendRequest(stream_id="s", expected_version=3, events=[{"type": "a"}])


def test_the_replay_frame_has_every_payload_field() -> None:
    events = [
        StoredEvent(
            stream_id="s",
            partition=0,
            offset=n,
            index=0,
            event={"id": f"e{n}", "type": "t", "time": f"2026-01-01T00:00:0{n}.000Z", "data": d},
            version=n + 1,
        )
        for n, d in enumerate([{"a": 1}, {"b": "x"}, {}])
    ]
    frame = frame_of([_row(e) for e in events])
    assert frame.get_column("version").to_list() == [1, 2, 3]
    assert frame.get_column("data").struct.field("b").to_list() == [None, "x", None]
    assert frame.schema["time"] == pl.Datetime("ms", "UTC")
    assert frame_of([]).height == 0


class FakeMessage:
    def __init__(self, value: bytes, headers: Any = None) -> None:
        self._value, self._headers = value, headers

    def value(self) -> bytes:
        return self._value

    def headers(self) -> Any:
        return self._headers

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return 7

    def timestamp(self) -> tuple[int, int]:
        return (0, 5)


STREAM = StreamRecord(
    stream_name="s",
    topic_name="t",
    source_capability="x",
    stream_id="sid",
    tenant_id="acme",
    kafka_topic="esb.acme.t",
    created_by="me",
    created_at="now",
    replication_factor=1,
    requested_replication_factor=1,
)


def test_records_become_entries_json_arrow_and_foreign() -> None:
    (json_entry,) = record_events(FakeMessage(b'{"id": "e1", "type": "a"}'), STREAM)  # type: ignore[arg-type]
    assert (json_entry.partition, json_entry.offset, json_entry.time_ms) == (1, 7, 5)
    frame = pl.DataFrame(
        {
            "event_type": ["a", "b"],
            "source_capability": ["x", "x"],
            "aggregate_id": ["k", "k"],
            "aggregate_type": ["T", "T"],
            "event_time": [10, 20],
        }
    )
    ((_, value),) = to_batches(
        frame, tenant_id="acme", stream_id="sid", user_id="u", partitions=1, now_ms=0, batch_id="b"
    )
    entries = record_events(FakeMessage(value, [FORMAT_HEADER]), STREAM)  # type: ignore[arg-type]
    assert [(e.event_id, e.index, e.time_ms) for e in entries] == [("b-0", 0, 10), ("b-1", 1, 20)]
    assert record_events(FakeMessage(b"\x00junk"), STREAM) == []  # type: ignore[arg-type]
    assert record_events(FakeMessage(b'{"no": "id"}'), STREAM) == []  # type: ignore[arg-type]


class RecordingPipe:
    """The hash and zset state a pipeline's queued writes leave behind."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, bytes]] = {}
        self.zsets: dict[str, dict[str, int]] = {}
        self.order: list[tuple[str, str]] = []  # (command, key or member) in queue order

    def hset(self, key: str, field: str, value: bytes) -> None:
        self.hashes.setdefault(key, {})[field] = value
        self.order.append(("hset", key))

    def zadd(self, key: str, mapping: dict[str, int]) -> None:
        self.zsets.setdefault(key, {}).update(mapping)
        self.order.extend(("zadd", m) for m in mapping)


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 30), st.sampled_from("abc"), st.booleans()),
        max_size=40,
    )
)
def test_batched_index_writes_leave_what_per_event_writes_leave(
    draws: list[tuple[int, int, str, bool]],
) -> None:
    items = [
        IndexedEvent(
            "acme",
            "sid",
            partition,
            offset,
            0,
            1000 + offset,
            {"id": f"e{partition}-{offset}", "type": kind}
            | ({"aggregatetype": "T", "aggregateid": kind} if agg else {}),
        )
        for partition, offset, kind, agg in draws
    ]
    batched, oracle = RecordingPipe(), RecordingPipe()
    queue_writes(batched, items)
    for item in items:  # the brute-force oracle: one event at a time
        oracle.hset(naming.event_key(item.tenant_id, item.event_id), item.stream_id, item.stored())
        for key in index_keys(item.stream_id, item.event):
            oracle.zadd(key, {item.member: item.time_ms})
    assert (batched.hashes, batched.zsets) == (oracle.hashes, oracle.zsets)
    hashed: set[str] = set()  # every member's hash is queued before the member itself
    for command, name in batched.order:
        if command == "hset":
            hashed.add(name)
        else:
            assert naming.event_key("acme", event_id_of(name)) in hashed


class FakeRedis:
    def __init__(self) -> None:
        self.generation = 0

    async def incr(self, key: str) -> int:
        self.generation += 1
        return self.generation

    async def scan_iter(self, match: str, count: int) -> Any:
        for key in ():
            yield key

    async def unlink(self, *keys: bytes) -> None:
        pass


class FakeBus:
    def __init__(self) -> None:
        self.redis = FakeRedis()


class FakeIndexers:
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class IndexerThatCatchesUp(EventStoreService):
    caught_up = True

    async def wait_indexed(self, streams: Any, deadline_s: float = 10.0) -> bool:
        return self.caught_up


async def test_a_rebuild_that_does_not_catch_up_in_time_says_so() -> None:
    service = IndexerThatCatchesUp(bus=FakeBus(), indexers=FakeIndexers())  # type: ignore[arg-type]
    assert await service.rebuild_indexes([STREAM]) == 1
    service.caught_up = False
    with pytest.raises(ServiceUnavailable, match=r"generation 2.*Do not rebuild again"):
        await service.rebuild_indexes([STREAM])
    assert await service.rebuild_indexes([STREAM], wait=False) == 3
