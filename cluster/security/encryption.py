"""Encryption at rest for `encrypted: true` streams: AES-256-GCM with per-tenant data keys.

Each tenant has versioned 32-byte data keys, stored only wrapped (AES-GCM encrypted) by the
master key, with AAD binding tenant, key version and master key id. An event's data is
encrypted under the tenant's current data key with a random 96-bit nonce and AAD binding
tenant, stream id and event id, so a ciphertext copied to another event, stream or tenant
fails to decrypt. Envelope (bytes; base64 it for JSON, e.g. CloudEvents `data_base64`):

    version (1 byte, 0x01) | data key version (4 bytes, big-endian) | nonce (12) | ct + tag (16)

Master rotation rewraps every data key (ciphertexts are untouched, so old events stay
readable); deleting a tenant's keys leaves tombstones, and its data answers KeyDeleted.

>>> ring = KeyRing(InMemoryKeyStore(), MasterKeys(MasterKey.generate("m1")))
>>> blob = ring.encrypt_payload("acme", "s1", "e1", b'{"card": "4111"}')
>>> ring.decrypt_payload("acme", "s1", "e1", blob)
b'{"card": "4111"}'
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cluster.errors import DecryptionFailed, InvalidInput, KeyDeleted
from cluster.security.keystore import InMemoryKeyStore, WrappedKeyStore

__all__ = ["ENVELOPE_VERSION", "KeyRing", "MasterKey", "MasterKeys"]

ENVELOPE_VERSION = 1
_HEADER = struct.Struct(">BI")  # envelope version, data key version
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_BYTES = 32
_TOMBSTONE = b'{"deleted": true}'


def _lp(value: str) -> bytes:
    """Length-prefixed UTF-8, so ("ab", "c") and ("a", "bc") give different AAD."""
    data = value.encode()
    return struct.pack(">H", len(data)) + data


def _event_aad(header: bytes, tenant: str, stream_id: str, event_id: str) -> bytes:
    return b"esb-event" + header + _lp(tenant) + _lp(stream_id) + _lp(event_id)


def _wrap_aad(tenant: str, version: int, master_id: str) -> bytes:
    return b"esb-datakey" + _lp(tenant) + struct.pack(">I", version) + _lp(master_id)


@dataclass(frozen=True)
class MasterKey:
    """A 32-byte key-encryption key with an id (recorded on every wrapped data key)."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != _KEY_BYTES:
            raise InvalidInput(f"master key {self.key_id!r} must be 32 bytes (AES-256)")

    @classmethod
    def generate(cls, key_id: str | None = None) -> MasterKey:
        return cls.from_bytes(os.urandom(_KEY_BYTES), key_id)

    @classmethod
    def from_bytes(cls, key: bytes, key_id: str | None = None) -> MasterKey:
        """Default id: a fingerprint (SHA-256 of the key, 12 hex), so no name is needed."""
        return cls(key_id or "k" + hashlib.sha256(key).hexdigest()[:12], key)

    @classmethod
    def from_base64(cls, text: str, key_id: str | None = None) -> MasterKey:
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raise InvalidInput("a master key must be base64 of 32 random bytes") from None
        return cls.from_bytes(key, key_id)

    def to_base64(self) -> str:
        return base64.b64encode(self.key).decode()


class MasterKeys:
    """The current master key (wraps new data keys) plus older ones (still unwrap).

    From settings: ESB_MASTER_KEY (base64) or ESB_MASTER_KEY_FILE, holding either one base64
    key or JSON `{"current": "m2", "keys": {"m1": "<base64>", "m2": "<base64>"}}`.
    """

    def __init__(self, current: MasterKey, previous: Iterable[MasterKey] = ()) -> None:
        self.current = current
        self._keys = {k.key_id: k for k in previous}
        self._keys[current.key_id] = current

    def get(self, key_id: str) -> MasterKey | None:
        return self._keys.get(key_id)

    def with_current(self, new: MasterKey) -> MasterKeys:
        return MasterKeys(new, self._keys.values())

    def to_json(self) -> str:
        """The key-file form holding every key (what from_config reads back).

        >>> keys = MasterKeys(MasterKey(key_id="m2", key=bytes(32)), [MasterKey("m1", bytes(32))])
        >>> json.loads(keys.to_json())["current"], sorted(json.loads(keys.to_json())["keys"])
        ('m2', ['m1', 'm2'])
        """
        keys = {k.key_id: k.to_base64() for k in self._keys.values()}
        return json.dumps({"current": self.current.key_id, "keys": keys}, indent=2)

    @classmethod
    def from_config(cls, key_b64: str | None = None, key_file: Path | None = None) -> MasterKeys:
        if key_b64:
            return cls(MasterKey.from_base64(key_b64))
        if key_file is None:
            raise InvalidInput(
                "encrypted streams need ESB_MASTER_KEY (base64 of 32 bytes) or ESB_MASTER_KEY_FILE"
            )
        text = Path(key_file).read_text().strip()
        if not text.startswith("{"):
            return cls(MasterKey.from_base64(text))
        doc = json.loads(text)
        keys = [MasterKey.from_base64(v, k) for k, v in doc["keys"].items()]
        current = next((k for k in keys if k.key_id == doc["current"]), None)
        if current is None:
            raise InvalidInput(f"{key_file}: `current` names no key in `keys`")
        return cls(current, keys)


class KeyRing:
    """Tenant data keys: created on first use, unwrapped on demand, cached `cache_ttl_s`.

    The cache bounds how long another process keeps using a key deleted elsewhere; this
    process forgets a tenant's keys at once when it deletes them. Store calls may block
    (Redis): in async code they happen only on cache misses.
    """

    def __init__(
        self,
        store: WrappedKeyStore,
        masters: MasterKeys,
        *,
        cache_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.masters = masters
        self._ttl = cache_ttl_s
        self._clock = clock
        self._keys: dict[tuple[str, int], tuple[bytes, float]] = {}
        self._current: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    # -- data keys ---------------------------------------------------------------------------

    def _wrap(self, tenant: str, version: int, key: bytes, master: MasterKey) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        wrapped = AESGCM(master.key).encrypt(nonce, key, _wrap_aad(tenant, version, master.key_id))
        record = {
            "v": 1,
            "master": master.key_id,
            "nonce": base64.b64encode(nonce).decode(),
            "key": base64.b64encode(wrapped).decode(),
        }
        return json.dumps(record).encode()

    def _unwrap(self, tenant: str, version: int, record: bytes) -> tuple[bytes, str]:
        doc = json.loads(record)
        if doc.get("deleted"):
            raise KeyDeleted(f"tenant {tenant!r} data key v{version} was deleted")
        master = self.masters.get(doc["master"])
        if master is None:
            raise DecryptionFailed(
                f"tenant {tenant!r} data key v{version} is wrapped by master key "
                f"{doc['master']!r}, which this process does not have"
            )
        try:
            key = AESGCM(master.key).decrypt(
                base64.b64decode(doc["nonce"]),
                base64.b64decode(doc["key"]),
                _wrap_aad(tenant, version, master.key_id),
            )
        except InvalidTag:
            raise DecryptionFailed(f"tenant {tenant!r} data key v{version} is corrupt") from None
        return key, master.key_id

    def key(self, tenant: str, version: int) -> bytes:
        """Data key `version` of `tenant`: KeyDeleted when it was deleted."""
        now = self._clock()
        cached = self._keys.get((tenant, version))
        if cached and cached[1] > now:
            return cached[0]
        record = self.store.get(tenant, version)
        if record is None:  # never existed here (or purged): not this tenant's data
            raise DecryptionFailed(f"tenant {tenant!r} has no data key v{version}")
        key, _ = self._unwrap(tenant, version, record)
        self._keys[(tenant, version)] = (key, now + self._ttl)
        return key

    def current_version(self, tenant: str) -> int:
        """The version new data is encrypted with; the tenant's first key is made here."""
        now = self._clock()
        cached = self._current.get(tenant)
        if cached and cached[1] > now:
            return cached[0]
        versions = self.store.versions(tenant)
        latest = versions[-1] if versions else 0
        if latest == 0 or self.store.get(tenant, latest) == _TOMBSTONE:
            latest = self._create(tenant, latest + 1)
        self._current[tenant] = (latest, now + self._ttl)
        return latest

    def _create(self, tenant: str, version: int) -> int:
        """Add a fresh data key at `version` or later (another process may win a version)."""
        while True:
            key = os.urandom(_KEY_BYTES)
            if self.store.add(
                tenant, version, self._wrap(tenant, version, key, self.masters.current)
            ):
                self._keys[(tenant, version)] = (key, self._clock() + self._ttl)
                return version
            version += 1

    def rotate_tenant_key(self, tenant: str) -> int:
        """A new data key for new data; older versions stay for reading. Returns its version."""
        versions = self.store.versions(tenant)
        version = self._create(tenant, (versions[-1] if versions else 0) + 1)
        self._current[tenant] = (version, self._clock() + self._ttl)
        return version

    def delete_tenant_keys(self, tenant: str) -> int:
        """Crypto-shredding: every data key of `tenant` is replaced by a tombstone, so all of
        its encrypted data is unreadable (KeyDeleted). Returns how many keys were deleted.

        Copies of the wrapped keys in Redis AOF/RDB files last until the next rewrite; a
        master rotation that retires the old master key closes that too.
        """
        deleted = 0
        for version in self.store.versions(tenant):
            if self.store.get(tenant, version) != _TOMBSTONE:
                self.store.put(tenant, version, _TOMBSTONE)
                deleted += 1
        with self._lock:
            self._current.pop(tenant, None)
            for cached in [k for k in self._keys if k[0] == tenant]:
                del self._keys[cached]
        return deleted

    def rotate_master(self, new_master: MasterKey) -> int:
        """Rewrap every tenant's data keys under `new_master` and make it current; returns the
        number rewrapped. Every process must hold the new master key (as non-current) before
        this runs, and may drop the old one after it."""
        masters = self.masters.with_current(new_master)
        self.masters = masters
        rewrapped = 0
        for tenant in self.store.tenants():
            for version in self.store.versions(tenant):
                record = self.store.get(tenant, version)
                if record is None or record == _TOMBSTONE:
                    continue
                key, master_id = self._unwrap(tenant, version, record)
                if master_id != new_master.key_id:
                    self.store.put(tenant, version, self._wrap(tenant, version, key, new_master))
                    rewrapped += 1
        return rewrapped

    # -- payloads ----------------------------------------------------------------------------

    def encrypt_payload(
        self, tenant: str, stream_id: str, event_id: str, plaintext: bytes
    ) -> bytes:
        """The envelope of `plaintext`, bound to (tenant, stream_id, event_id)."""
        version = self.current_version(tenant)
        header = _HEADER.pack(ENVELOPE_VERSION, version)
        nonce = os.urandom(_NONCE_BYTES)
        aad = _event_aad(header, tenant, stream_id, event_id)
        return header + nonce + AESGCM(self.key(tenant, version)).encrypt(nonce, plaintext, aad)

    def decrypt_payload(self, tenant: str, stream_id: str, event_id: str, envelope: bytes) -> bytes:
        """The plaintext, or DecryptionFailed (tampered, other ids) / KeyDeleted (shredded)."""
        if len(envelope) < _HEADER.size + _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionFailed("encrypted event data is truncated")
        header = envelope[: _HEADER.size]
        format_version, version = _HEADER.unpack(header)
        if format_version != ENVELOPE_VERSION:
            raise DecryptionFailed(f"unknown encryption envelope version {format_version}")
        nonce = envelope[_HEADER.size : _HEADER.size + _NONCE_BYTES]
        body = envelope[_HEADER.size + _NONCE_BYTES :]
        aad = _event_aad(header, tenant, stream_id, event_id)
        try:
            return AESGCM(self.key(tenant, version)).decrypt(nonce, body, aad)
        except InvalidTag:
            raise DecryptionFailed(
                f"event {event_id!r} of stream {stream_id!r} does not decrypt: tampered, or "
                "not this tenant's, stream's or event's data"
            ) from None


def in_memory_keyring(masters: MasterKeys | None = None) -> KeyRing:
    """A KeyRing on an in-memory store with a fresh master key: tests and examples."""
    return KeyRing(InMemoryKeyStore(), masters or MasterKeys(MasterKey.generate()))
