"""Encryption at rest: AES-256-GCM envelopes bound to tenant/stream/event, tenant data keys
wrapped by a rotating master key, crypto-shredding. Stores: in-memory and (fake) Redis."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest

from cluster.errors import InvalidInput
from cluster.security import (
    DecryptionFailed,
    InMemoryKeyStore,
    KeyDeleted,
    KeyRing,
    MasterKey,
    MasterKeys,
    RedisKeyStore,
    WrappedKeyStore,
)

CANARY = "CANARY-5f0c2e-do-not-leak"
PLAINTEXT = json.dumps({"card": "4111 1111 1111 1111", "note": CANARY}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[WrappedKeyStore]:
    if request.param == "memory":
        yield InMemoryKeyStore()
    else:
        client = fakeredis.FakeRedis()
        yield RedisKeyStore(client)
        client.flushall()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def m1() -> MasterKey:
    return MasterKey.generate("m1")


@pytest.fixture
def ring(store: WrappedKeyStore, m1: MasterKey, clock: Clock) -> KeyRing:
    return KeyRing(store, MasterKeys(m1), clock=clock)


def test_round_trip(ring: KeyRing) -> None:
    for plaintext in (PLAINTEXT, b"", b"x" * 1_000_000):
        blob = ring.encrypt_payload("acme", "stream-1", "event-1", plaintext)
        assert ring.decrypt_payload("acme", "stream-1", "event-1", blob) == plaintext


def test_envelope_layout_and_fresh_nonces(ring: KeyRing) -> None:
    one = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    two = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    assert one[0] == 1  # envelope version
    assert int.from_bytes(one[1:5], "big") == 1  # data key version
    assert one[5:17] != two[5:17]  # random 96-bit nonces
    assert len(one) == 1 + 4 + 12 + len(PLAINTEXT) + 16


def test_a_flipped_bit_anywhere_fails(ring: KeyRing) -> None:
    blob = ring.encrypt_payload("acme", "s", "e", b"short secret")
    for bit in range(len(blob) * 8):
        flipped = bytearray(blob)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecryptionFailed):
            ring.decrypt_payload("acme", "s", "e", bytes(flipped))


def test_truncated_fails(ring: KeyRing) -> None:
    blob = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    for cut in (0, 5, 17, 32, len(blob) - 1):
        with pytest.raises(DecryptionFailed):
            ring.decrypt_payload("acme", "s", "e", blob[:cut])


def test_other_tenant_fails(ring: KeyRing) -> None:
    blob = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    with pytest.raises(DecryptionFailed):  # globex has no key at all yet
        ring.decrypt_payload("globex", "s", "e", blob)
    ring.encrypt_payload("globex", "s", "e", b"globex data")  # now it has a v1 of its own
    with pytest.raises(DecryptionFailed):
        ring.decrypt_payload("globex", "s", "e", blob)


def test_another_tenants_key_fails(store: WrappedKeyStore, m1: MasterKey) -> None:
    """Even with globex's data key copied under acme's name, nothing decrypts: the wrap is
    bound to its tenant, and the payload AAD to acme."""
    ring = KeyRing(store, MasterKeys(m1))
    blob = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    ring.encrypt_payload("globex", "s", "e", b"x")
    globex_wrapped = store.get("globex", 1)
    assert globex_wrapped is not None
    store.put("acme", 1, globex_wrapped)
    fresh = KeyRing(store, MasterKeys(m1))
    with pytest.raises(DecryptionFailed):
        fresh.decrypt_payload("acme", "s", "e", blob)


@pytest.mark.parametrize(
    ("tenant", "stream", "event"),
    [("acme", "other-stream", "e"), ("acme", "s", "other-event"), ("acme", "s\x00", "e")],
)
def test_wrong_associated_data_fails(ring: KeyRing, tenant: str, stream: str, event: str) -> None:
    blob = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    with pytest.raises(DecryptionFailed):
        ring.decrypt_payload(tenant, stream, event, blob)


def test_ids_are_length_prefixed(ring: KeyRing) -> None:
    blob = ring.encrypt_payload("acme", "ab", "c", PLAINTEXT)
    with pytest.raises(DecryptionFailed):
        ring.decrypt_payload("acme", "a", "bc", blob)


def test_master_rotation_keeps_old_ciphertexts_readable(
    store: WrappedKeyStore, m1: MasterKey
) -> None:
    ring = KeyRing(store, MasterKeys(m1))
    old = {t: ring.encrypt_payload(t, "s", "e", PLAINTEXT) for t in ("acme", "globex")}
    ring.rotate_tenant_key("acme")  # two versions for acme: both get rewrapped
    newer = ring.encrypt_payload("acme", "s", "e2", PLAINTEXT)
    m2 = MasterKey.generate("m2")
    assert ring.rotate_master(m2) == 3
    assert ring.rotate_master(m2) == 0  # idempotent
    # A process that only has the new master reads everything written before.
    only_m2 = KeyRing(store, MasterKeys(m2))
    for tenant, blob in old.items():
        assert only_m2.decrypt_payload(tenant, "s", "e", blob) == PLAINTEXT
    assert only_m2.decrypt_payload("acme", "s", "e2", newer) == PLAINTEXT
    # ... and the old master alone no longer unwraps anything.
    with pytest.raises(DecryptionFailed, match="master key 'm2'"):
        KeyRing(store, MasterKeys(m1)).decrypt_payload("globex", "s", "e", old["globex"])


def test_tenant_key_rotation(ring: KeyRing) -> None:
    v1 = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    assert ring.rotate_tenant_key("acme") == 2
    v2 = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    assert int.from_bytes(v2[1:5], "big") == 2
    assert ring.decrypt_payload("acme", "s", "e", v1) == PLAINTEXT
    assert ring.decrypt_payload("acme", "s", "e", v2) == PLAINTEXT


def test_deleting_the_tenant_key_shreds_its_data(
    store: WrappedKeyStore, m1: MasterKey, clock: Clock
) -> None:
    ring = KeyRing(store, MasterKeys(m1), clock=clock)
    other_process = KeyRing(store, MasterKeys(m1), clock=clock, cache_ttl_s=60)
    blob = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    kept = ring.encrypt_payload("globex", "s", "e", PLAINTEXT)
    assert other_process.decrypt_payload("acme", "s", "e", blob) == PLAINTEXT  # cached there
    ring.rotate_tenant_key("acme")
    assert ring.delete_tenant_keys("acme") == 2
    with pytest.raises(KeyDeleted) as caught:
        ring.decrypt_payload("acme", "s", "e", blob)
    assert caught.value.status == 410
    clock.now += 60  # other processes forget the key within their cache TTL
    with pytest.raises(KeyDeleted):
        other_process.decrypt_payload("acme", "s", "e", blob)
    assert ring.decrypt_payload("globex", "s", "e", kept) == PLAINTEXT  # others unaffected
    # New data gets a new key version; the shredded data stays unreadable.
    fresh = ring.encrypt_payload("acme", "s", "e", b"after")
    assert int.from_bytes(fresh[1:5], "big") == 3
    assert ring.decrypt_payload("acme", "s", "e", fresh) == b"after"
    with pytest.raises(KeyDeleted):
        KeyRing(store, MasterKeys(m1)).decrypt_payload("acme", "s", "e", blob)
    assert ring.delete_tenant_keys("globex") == 1
    assert ring.rotate_master(MasterKey.generate("m2")) == 1  # tombstones are skipped


def test_canary_never_in_ciphertext_or_key_store(store: WrappedKeyStore, m1: MasterKey) -> None:
    ring = KeyRing(store, MasterKeys(m1))
    blob = ring.encrypt_payload("acme", "s", "e", PLAINTEXT)
    data_key = ring.key("acme", 1)
    for text in (blob, base64.b64encode(blob)):
        assert CANARY.encode() not in text
        assert b"4111" not in text
    stored = store.get("acme", 1)
    assert stored is not None
    assert data_key not in stored and base64.b64encode(data_key) not in stored
    assert m1.key not in stored and m1.to_base64().encode() not in stored


def test_redis_key_layout() -> None:
    client = fakeredis.FakeRedis()
    ring = KeyRing(RedisKeyStore(client), MasterKeys(MasterKey.generate("m1")))
    ring.encrypt_payload("acme", "s", "e", b"x")
    ring.rotate_tenant_key("acme")
    assert client.exists("esb:tenant:acme:datakey:1", "esb:tenant:acme:datakey:2") == 2
    store = RedisKeyStore(client)
    assert store.versions("acme") == [1, 2] and store.tenants() == ["acme"]
    assert store.delete("acme", 1) and store.delete("acme", 2)
    assert not store.delete("acme", 2)
    assert store.tenants() == [] and client.keys("esb:tenant:acme:*") == []


class _StaleStore(InMemoryKeyStore):
    """A store whose first versions() read misses a key another process just added."""

    def __init__(self) -> None:
        super().__init__()
        self.stale_reads = 1

    def versions(self, tenant: str) -> list[int]:
        if self.stale_reads:
            self.stale_reads -= 1
            return []
        return super().versions(tenant)


def test_racing_first_keys_never_overwrite(m1: MasterKey) -> None:
    store = _StaleStore()
    first = KeyRing(store, MasterKeys(m1))
    store.stale_reads = 0
    blob_1 = first.encrypt_payload("acme", "s", "e", b"one")  # creates v1
    store.stale_reads = 1
    second = KeyRing(store, MasterKeys(m1))
    blob_2 = second.encrypt_payload("acme", "s", "e", b"two")  # thinks none exist; gets v2
    assert int.from_bytes(blob_2[1:5], "big") == 2
    for ring in (first, second):
        assert ring.decrypt_payload("acme", "s", "e", blob_1) == b"one"
        assert ring.decrypt_payload("acme", "s", "e", blob_2) == b"two"


def test_master_keys_from_config(tmp_path: Path) -> None:
    one, two = MasterKey.generate("m1"), MasterKey.generate("m2")
    assert MasterKeys.from_config(one.to_base64()).current.key == one.key
    single = tmp_path / "master.key"
    single.write_text(one.to_base64() + "\n")
    assert MasterKeys.from_config(key_file=single).current.key == one.key
    both = tmp_path / "masters.json"
    keys = {"m1": one.to_base64(), "m2": two.to_base64()}
    both.write_text(json.dumps({"current": "m2", "keys": keys}))
    loaded = MasterKeys.from_config(key_file=both)
    assert loaded.current.key_id == "m2"
    assert loaded.get("m1") is not None
    assert loaded.get("m1") == one
    with pytest.raises(InvalidInput):
        MasterKeys.from_config()
    with pytest.raises(InvalidInput, match="32 bytes"):
        MasterKey.from_base64(base64.b64encode(b"short").decode())
    with pytest.raises(InvalidInput, match="base64"):
        MasterKey.from_base64("not base64 !!")
    assert "key=" not in repr(one)  # the key never shows up in logs
