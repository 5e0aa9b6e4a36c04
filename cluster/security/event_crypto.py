"""Encrypted CloudEvents: the one place that turns an `encrypted: true` stream's event data into
ciphertext and back. Publishing seals; read-back, pipelines, dispatchers and the live tail open.

Only `data` is encrypted; the envelope attributes (id, type, time, subject, tenant, stream,
aggregate, user, tracing ids) stay in clear so that routing, filtering and partitioning work
without keys. A sealed event carries the JSON bytes of `data` as an AES-256-GCM envelope
(cluster.security.encryption: tenant data key, random 96-bit nonce, AAD binding tenant, stream
id and event id) in CloudEvents `data_base64`, marked by the extension attribute
`esbencrypted`; `datacontenttype` says what the attribute holds now:

    {"specversion": "1.0", "id": "e1", "type": "card.added", ...,
     "datacontenttype": "application/octet-stream", "esbencrypted": "aes-256-gcm-v1",
     "data_base64": "<version | key version | nonce | ciphertext + tag>"}

Opening checks the envelope against the *reader's* tenant and stream, never the record's own
attributes: a record copied into another tenant's or stream's topic does not decrypt.

>>> cipher = EventCipher(in_memory_keyring(), "acme", "s1")
>>> event = {"id": "e1", "type": "card.added", "datacontenttype": "application/json",
...          "data": {"card": "4111"}}
>>> sealed = cipher.seal(event)
>>> "data" in sealed, sealed["esbencrypted"], sealed["datacontenttype"]
(False, 'aes-256-gcm-v1', 'application/octet-stream')
>>> cipher.open(sealed) == event
True
>>> try:
...     EventCipher(cipher.ring, "acme", "s2").open(sealed)
... except DecryptionFailed:
...     print("another stream's reader: refused")
another stream's reader: refused
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from cluster.errors import DecryptionFailed, InvalidInput
from cluster.security.encryption import KeyRing, MasterKeys, in_memory_keyring
from cluster.security.keystore import RedisKeyStore
from cluster.settings import Settings

__all__ = ["MARKER", "SCHEME", "EventCipher", "in_memory_keyring", "keyring_from", "stream_cipher"]

MARKER = "esbencrypted"
SCHEME = "aes-256-gcm-v1"
_CIPHERTEXT_TYPE = "application/octet-stream"
_PLAINTEXT_TYPE = "application/json"  # the bus always writes `data` as JSON


def keyring_from(settings: Settings, client: redis.Redis | None = None) -> KeyRing:
    """The KeyRing of these settings: master key(s) from ESB_MASTER_KEY or ESB_MASTER_KEY_FILE,
    wrapped data keys in the settings' Redis. InvalidInput when no usable master key is set."""
    try:
        masters = MasterKeys.from_config(
            settings.esb_master_key.get_secret_value() if settings.esb_master_key else None,
            settings.esb_master_key_file,
        )
    except (OSError, ValueError, KeyError) as exc:  # unreadable file, bad JSON
        raise InvalidInput(f"cannot read the master key file: {exc}") from None
    store = RedisKeyStore(client or redis.Redis.from_url(settings.redis, socket_timeout=30))
    return KeyRing(store, masters)


def stream_cipher(
    settings: Settings, encrypted: bool, tenant_id: str, stream_id: str
) -> EventCipher | None:
    """The cipher of one stream for a process without a Bus (actors); None for a plain one."""
    return EventCipher(keyring_from(settings), tenant_id, stream_id) if encrypted else None


class EventCipher:
    """Seals and opens the CloudEvents of one stream (tenant, stream id). Key store calls may
    block on a cache miss: async callers run these methods in a thread."""

    def __init__(self, ring: KeyRing, tenant_id: str, stream_id: str) -> None:
        self.ring = ring
        self.tenant_id = tenant_id
        self.stream_id = stream_id

    def seal(self, event: dict[str, Any]) -> dict[str, Any]:
        """A copy of `event` with `data` encrypted (an event without `data` is copied as is)."""
        if "data" not in event:
            return dict(event)
        sealed = {k: v for k, v in event.items() if k != "data"}
        blob = self.ring.encrypt_payload(
            self.tenant_id, self.stream_id, str(event["id"]), orjson.dumps(event["data"])
        )
        sealed["datacontenttype"] = _CIPHERTEXT_TYPE
        sealed[MARKER] = SCHEME
        sealed["data_base64"] = base64.b64encode(blob).decode()
        return sealed

    def _plaintext(self, event: dict[str, Any]) -> bytes:
        if event.get(MARKER) != SCHEME:
            raise DecryptionFailed(f"unknown event encryption scheme {event.get(MARKER)!r}")
        event_id, encoded = event.get("id"), event.get("data_base64")
        if not isinstance(event_id, str) or not isinstance(encoded, str):
            raise DecryptionFailed("an encrypted event needs a string `id` and `data_base64`")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise DecryptionFailed(f"event {event_id!r}: data_base64 is not base64") from None
        return self.ring.decrypt_payload(self.tenant_id, self.stream_id, event_id, blob)

    def _opened(self, event: dict[str, Any], data: Any) -> dict[str, Any]:
        opened = {k: v for k, v in event.items() if k not in (MARKER, "data_base64")}
        opened["datacontenttype"] = _PLAINTEXT_TYPE
        opened["data"] = data
        return opened

    def open(self, event: dict[str, Any]) -> dict[str, Any]:
        """`event` with `data` decrypted; an event without the marker is answered unchanged.
        DecryptionFailed (tampered, another tenant's or stream's) or KeyDeleted (shredded)."""
        if MARKER not in event:
            return event
        return self._opened(event, orjson.loads(self._plaintext(event)))

    def open_value(self, value: bytes) -> bytes:
        """A record value with its event's data decrypted, as CloudEvents JSON bytes (the data
        is spliced in, not parsed). Values that are not sealed events are answered unchanged."""
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        if not isinstance(event, dict) or MARKER not in event:
            return value
        return orjson.dumps(self._opened(event, orjson.Fragment(self._plaintext(event))))

    def open_values(self, values: Sequence[bytes]) -> tuple[list[bytes], list[tuple[int, str]]]:
        """open_value of each value; a value that fails to decrypt is kept as it was and its
        position comes back with the reason, for the caller to dead-letter."""
        opened: list[bytes] = []
        failed: list[tuple[int, str]] = []
        for i, value in enumerate(values):
            try:
                opened.append(self.open_value(value))
            except DecryptionFailed as exc:
                opened.append(value)
                failed.append((i, f"{type(exc).__name__}: {exc.detail}"))
        return opened, failed
