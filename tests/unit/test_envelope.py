"""The CloudEvents envelope and the batch body codecs, without any service."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from cluster.errors import BadRequest, InvalidInput, UnsupportedMediaType
from pipelines.envelope import EventIn, decode, encode, rfc3339_ms, to_cloudevent
from serve.codecs import parse_batch, validate_events

BASE = {
    "event_type": "user.created",
    "source_capability": "users",
    "aggregate_id": "u1",
    "aggregate_type": "User",
}


def test_cloudevent_has_required_and_extension_attributes() -> None:
    event = EventIn(**BASE, correlation_id="c1", payload={"a": 1}, event_time=1_700_000_000_123)
    ce = decode(
        encode(to_cloudevent(event, event_id="e", tenant_id="t", stream_id="s", user_id="me"))
    )
    assert ce["specversion"] == "1.0" and ce["id"] == "e" and ce["source"] == "/t/users"
    assert ce["time"] == "2023-11-14T22:13:20.123Z"
    assert ce["data"] == {"a": 1} and ce["datacontenttype"] == "application/json"
    assert (ce["tenantid"], ce["aggregateid"], ce["aggregatetype"], ce["userid"]) == (
        "t",
        "u1",
        "User",
        "me",
    )
    assert ce["correlationid"] == "c1" and "causationid" not in ce
    assert all(k.isalnum() and k.islower() for k in ce)


def test_event_time_accepts_rfc3339_and_epoch_ms_and_defaults_to_now() -> None:
    rfc = EventIn(**BASE, event_time="2026-01-02T03:04:05.678+01:00")
    ce = to_cloudevent(rfc, event_id="e", tenant_id="t", stream_id="s", user_id="u")
    assert ce["time"] == "2026-01-02T02:04:05.678Z"
    now = to_cloudevent(
        EventIn(**BASE), event_id="e", tenant_id="t", stream_id="s", user_id="u", now_ms=5
    )
    assert now["time"] == rfc3339_ms(5) == "1970-01-01T00:00:00.005Z"


@pytest.mark.parametrize(
    "change",
    [
        {"event_time": "2026-01-02T03:04:05"},  # no offset
        {"event_time": -1},
        {"event_type": ""},
        {"event_type": "has space"},
        {"aggregate_id": 5},
        {"payload": [1, 2]},
        {"unknown": 1},
    ],
)
def test_bad_events_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        validate_events([{**BASE, **change}])


def test_key_defaults_to_aggregate_id() -> None:
    assert EventIn(**BASE).key == "u1"
    assert EventIn(**BASE, partition_key="p").key == "p"


def test_json_object_array_and_ndjson_bodies() -> None:
    obj = parse_batch(orjson.dumps({"stream_id": "s", "events": [BASE]}), "application/json")
    assert obj.envelope == {"stream_id": "s"} and obj.events == [BASE]
    arr = parse_batch(orjson.dumps([BASE, BASE]), "application/json; charset=utf-8")
    assert len(arr.events) == 2 and arr.envelope == {}
    nd = parse_batch(
        b"\n".join(orjson.dumps(BASE) for _ in range(3)) + b"\n", "application/x-ndjson"
    )
    assert len(validate_events(nd.events)) == 3


def test_arrow_ipc_body_with_json_payload_column() -> None:
    table = pa.table(
        {
            **{k: [v, v] for k, v in BASE.items()},
            "event_id": ["a", "b"],
            "payload": ['{"n": 1}', '{"n": 2}'],
            "event_time": pa.array(
                [datetime(2026, 1, 1, tzinfo=UTC)] * 2, pa.timestamp("ms", "UTC")
            ),
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    events = validate_events(
        parse_batch(sink.getvalue(), "application/vnd.apache.arrow.stream").events
    )
    assert [e.payload for e in events] == [{"n": 1}, {"n": 2}]
    assert [e.event_id for e in events] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"{", "application/json", BadRequest),
        (b"42", "application/json", InvalidInput),
        (b'{"events": 1}', "application/json", InvalidInput),
        (b"{}\n{", "application/x-ndjson", BadRequest),
        (b"not arrow", "application/vnd.apache.arrow.stream", BadRequest),
        (b"[]", "text/plain", UnsupportedMediaType),
        (b"[]", None, UnsupportedMediaType),
    ],
)
def test_unparseable_bodies(body: bytes, content_type: str | None, error: type) -> None:
    with pytest.raises(error):
        parse_batch(body, content_type)


def test_batch_errors_name_each_bad_event() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_events([BASE, {**BASE, "event_type": ""}, {**BASE, "aggregate_type": None}])
    assert [e["index"] for e in caught.value.errors] == [1, 2]
