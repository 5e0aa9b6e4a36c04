"""Encrypted CloudEvents (cluster.security.event_crypto) and the `esb keys` operator commands, on an
in-memory key store: no services."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from cluster.cli.keys import delete_tenant, rotate_master
from cluster.cli.keys import execute as keys_command
from cluster.errors import InvalidInput
from cluster.models.streams import StreamConfig
from cluster.security import DecryptionFailed, KeyDeleted, KeyRing, MasterKey, MasterKeys
from cluster.security.event_crypto import (
    MARKER,
    SCHEME,
    EventCipher,
    in_memory_keyring,
    keyring_from,
)
from cluster.services.bus import Bus
from cluster.services.live import _frames
from cluster.services.publishing import _sealed_arrow
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings
from pipelines.arrow_batch import to_batches, to_cloudevents
from pipelines.decode import decode_cloudevents
from pipelines.envelope import EventIn, encode, to_cloudevent
from pipelines.spec import FieldType

CANARY = "CANARY-unit-9b1d"


def cloudevent(event_id: str = "e1", **payload: Any) -> dict[str, Any]:
    event = EventIn(
        event_type="card.added",
        source_capability="cards",
        aggregate_id="c1",
        aggregate_type="Card",
        event_time=1_000,
        payload={"note": CANARY, "amount": 7, **payload},
    )
    return to_cloudevent(event, event_id=event_id, tenant_id="acme", stream_id="s1", user_id="u")


@pytest.fixture
def cipher() -> EventCipher:
    return EventCipher(in_memory_keyring(), "acme", "s1")


def test_sealed_event_keeps_the_envelope_and_hides_the_data(cipher: EventCipher) -> None:
    event = cloudevent()
    sealed = cipher.seal(event)
    raw = encode(sealed)
    assert CANARY.encode() not in raw and b"amount" not in raw
    assert sealed[MARKER] == SCHEME and "data" not in sealed
    assert {k: sealed[k] for k in ("id", "type", "subject", "time")} == {
        k: event[k] for k in ("id", "type", "subject", "time")
    }
    assert cipher.open(sealed) == event
    assert cipher.seal(event)["data_base64"] != sealed["data_base64"]  # a fresh nonce each time


def test_open_value_gives_what_the_bulk_decoder_reads(cipher: EventCipher) -> None:
    plain = [encode(cloudevent(f"e{i}", amount=i)) for i in range(3)]
    sealed = [encode(cipher.seal(orjson.loads(v))) for v in plain]
    opened, failed = cipher.open_values(sealed)
    assert failed == []
    assert [orjson.loads(v) for v in opened] == [orjson.loads(v) for v in plain]
    fields: dict[str, FieldType] = {"amount": "int", "note": "str"}
    assert decode_cloudevents(opened, fields).equals(decode_cloudevents(plain, fields))


def test_values_that_are_not_sealed_events_pass_unchanged(cipher: EventCipher) -> None:
    for value in (b"not json", b"[1]", encode(cloudevent())):
        assert cipher.open_value(value) is value


def flip(event: dict[str, Any], byte: int) -> dict[str, Any]:
    blob = bytearray(base64.b64decode(event["data_base64"]))
    blob[byte] ^= 0x01
    return {**event, "data_base64": base64.b64encode(bytes(blob)).decode()}


def test_tampered_or_misplaced_events_fail_and_are_reported(cipher: EventCipher) -> None:
    sealed = cipher.seal(cloudevent())
    ring = cipher.ring
    ring.current_version("other")  # another tenant with a key of the same version
    wrong = [
        flip(sealed, 20),  # the nonce
        flip(sealed, -1),  # the tag
        {**sealed, "id": "e2"},  # moved to another event
        {**sealed, MARKER: "rot13"},
        {**sealed, "data_base64": "%%%"},
    ]
    for event in wrong:
        with pytest.raises(DecryptionFailed):
            cipher.open(event)
    for reader in (EventCipher(ring, "acme", "s2"), EventCipher(ring, "other", "s1")):
        with pytest.raises(DecryptionFailed):
            reader.open(sealed)
    values = [encode(sealed), encode(wrong[0]), b"junk", encode(wrong[2])]
    opened, failed = cipher.open_values(values)
    assert [i for i, _ in failed] == [1, 3]
    assert all(why.startswith("DecryptionFailed: ") for _, why in failed)
    assert opened[1] == values[1] and opened[2] == b"junk"


def test_deleted_tenant_key_answers_key_deleted(cipher: EventCipher) -> None:
    sealed = cipher.seal(cloudevent())
    assert delete_tenant(cipher.ring, "acme") == 1
    with pytest.raises(KeyDeleted):
        cipher.open(sealed)
    _, failed = cipher.open_values([encode(sealed)])
    assert failed[0][1].startswith("KeyDeleted: ")
    fresh = cipher.seal(cloudevent("e2"))  # new events get a new key
    assert cipher.open(fresh)["data"]["note"] == CANARY


def test_rotate_master_writes_every_key_first_and_old_events_stay_readable(
    tmp_path: Path,
) -> None:
    old = MasterKey.generate()
    ring = in_memory_keyring(MasterKeys(old))
    sealed = EventCipher(ring, "acme", "s1").seal(cloudevent())
    new = MasterKey.generate()
    (tmp_path / "new.key").write_text(new.to_base64())
    combined = tmp_path / "master.key"
    assert rotate_master(ring, tmp_path / "new.key", combined) == 1
    assert combined.stat().st_mode & 0o777 == 0o600
    assert json.loads(combined.read_text())["current"] == new.key_id
    with_file = KeyRing(ring.store, MasterKeys.from_config(key_file=combined))
    assert EventCipher(with_file, "acme", "s1").open(sealed)["data"]["note"] == CANARY
    only_new = KeyRing(ring.store, MasterKeys(new))
    assert EventCipher(only_new, "acme", "s1").open(sealed)["data"]["note"] == CANARY
    only_old = KeyRing(ring.store, MasterKeys(old))
    with pytest.raises(DecryptionFailed, match="does not have"):
        EventCipher(only_old, "acme", "s1").open(sealed)


def test_sealed_arrow_records_are_per_event_json_in_their_batch_partition(
    cipher: EventCipher,
) -> None:
    frame = pl.DataFrame(
        {
            "event_type": ["a.b"] * 4,
            "source_capability": ["s"] * 4,
            "aggregate_id": ["k1", "k2", "k3", "k1"],
            "aggregate_type": ["T"] * 4,
            "note": [CANARY] * 4,
        }
    )
    batches = to_batches(
        frame, tenant_id="acme", stream_id="s1", user_id="u", partitions=3, now_ms=0, batch_id="b"
    )
    records, partitions = _sealed_arrow(cipher, batches)
    assert len(records) == 4 and all(CANARY.encode() not in v for _, v in records)
    expected = [(p, e) for p, value in batches for e in to_cloudevents(value)]
    opened = [cipher.open(orjson.loads(v)) for _, v in records]
    assert list(zip(partitions, opened, strict=True)) == expected
    assert [k for k, _ in records] == [e["subject"].encode() for _, e in expected]


class Record:
    """What _frames reads of a confluent-kafka Message."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def key(self) -> bytes:
        return b"c1"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 5

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


def test_live_frames_are_decrypted_and_a_failure_is_an_error_frame(cipher: EventCipher) -> None:
    sealed = cipher.seal(cloudevent())
    (frame,) = _frames(Record(encode(sealed)), None, cipher)
    assert orjson.loads(frame)["event"]["data"]["note"] == CANARY
    (error,) = _frames(Record(encode(flip(sealed, -1))), None, cipher)
    assert orjson.loads(error)["error"].startswith("DecryptionFailed")
    assert _frames(Record(encode(sealed)), None, None) == [
        b'{"partition":0,"offset":5,"key":"c1","event":' + encode(sealed) + b"}"
    ]


def test_no_master_key_is_a_4xx_at_stream_creation() -> None:
    settings = Settings(esb_master_key=None, esb_master_key_file=None)
    bus = Bus(settings)
    with pytest.raises(InvalidInput, match="ESB_MASTER_KEY"):
        _ = bus.keyring
    config = StreamConfig(stream_name="s", topic_name="s", source_capability="c", encrypted=True)
    with pytest.raises(InvalidInput, match="ESB_MASTER_KEY"):
        asyncio.run(EventStreamingService(bus=bus).provision_stream(config, "acme", "me"))
    with pytest.raises(InvalidInput, match="master key file"):
        keyring_from(Settings(esb_master_key_file=Path("/nonexistent/master.key")))


def test_keys_commands_refuse_what_they_must(tmp_path: Path) -> None:
    settings = Settings(esb_state_dir=tmp_path)
    out = tmp_path / "new.key"
    args = argparse.Namespace(keys_command="new-master", out=out)
    assert keys_command(args, settings, out=io.StringIO()) == 0
    assert len(base64.b64decode(out.read_text())) == 32 and out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(InvalidInput, match="exists"):
        keys_command(args, settings)
    with pytest.raises(InvalidInput, match="--yes"):
        delete = argparse.Namespace(keys_command="delete-tenant", tenant="t", yes=False)
        keys_command(delete, settings)
