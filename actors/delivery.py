"""Delivery for a subscription's dispatchers (actors.dispatcher): webhook POSTs with retries,
backoff and dead-lettering, forwarding to another stream, and decryption of encrypted streams.

Retries: a failed delivery blocks only its partition. The partition is paused, the event kept in
memory with its attempt count and first-attempt time, and retried after a full-jitter backoff
while the other partitions go on. After the last attempt (or max age) it goes to the dead-letter
topic in the same transaction that commits its offset.

Encrypted streams: each partition's batch is decrypted in a thread before delivery, so webhooks
receive plaintext CloudEvents. Dead letters keep the record as stored (encrypted); a replay
decrypts it again. A record that does not decrypt is dead-lettered at once, never skipped.

exactly_once webhooks: each delivered id is kept in esb:sub:<id>:done:<webhook-id> (for
IDEMPOTENCY_TTL_S), and an event whose id is there is skipped as a duplicate.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Message
from redis import Redis

from actors.dispatch_cycle import Cycle, now_iso
from cluster import naming
from cluster.errors import DecryptionFailed
from cluster.models.subscriptions import SubscriptionRecord
from cluster.observability import tracing
from cluster.security.event_crypto import stream_cipher
from cluster.security.webhooks import Outcome, WebhookSender
from cluster.settings import Settings


@dataclass
class Pending:
    """An event whose delivery failed and waits for its next attempt; its partition is paused."""

    msg: Message
    event: dict[str, Any]
    webhook_id: str
    body: bytes | None = None  # what is POSTed when not the record value (decrypted)
    attempts: int = 0
    first_at: float = field(default_factory=time.time)
    first_at_iso: str = field(default_factory=now_iso)
    next_at: float = 0.0  # time.monotonic()
    last_error: str | None = None
    last_status: int | None = None


class Delivery:
    """A dispatcher's way out: its webhook sender (none for a forwarding subscription), its
    stream's cipher (none for a plain stream) and its retry policy. `disable` is called on a
    410 Gone (the dispatcher disables the subscription)."""

    def __init__(
        self,
        settings: Settings,
        record: SubscriptionRecord,
        redis: Redis,
        disable: Callable[[str], None],
    ) -> None:
        self.settings, self.record, self.redis = settings, record, redis
        self.config = record.config
        self.mode = record.config.delivery_mode
        self.policy = record.config.retry_policy
        self.disable = disable
        self.sender = (
            WebhookSender(
                allow_private=settings.allow_private_webhooks,
                timeout_s=settings.webhook_timeout_s,
            )
            if record.config.webhook_url is not None
            else None
        )
        self.cipher = stream_cipher(settings, record.encrypted, record.tenant_id, record.stream_id)

    def open_all(self, messages: list[Message]) -> list[bytes | DecryptionFailed]:
        """Each record value with its data decrypted, or why it does not decrypt."""
        assert self.cipher is not None
        opened: list[bytes | DecryptionFailed] = []
        for m in messages:
            try:
                opened.append(self.cipher.open_value(m.value() or b""))
            except DecryptionFailed as exc:
                opened.append(exc)
        return opened

    def undecryptable(self, pending: Pending, exc: DecryptionFailed, cycle: Cycle) -> None:
        """Dead-lettered at once, as it is (still encrypted): retrying cannot make it decrypt."""
        pending.last_error = f"{type(exc).__name__}: {exc.detail}"
        cycle.last_error = pending.last_error
        cycle.outputs.append(self.dead_letter(pending))
        cycle.counters["undecryptable"] += 1
        cycle.counters["dead_lettered"] += 1

    async def attempt(self, pending: Pending, cycle: Cycle) -> bool:
        """One delivery attempt; True when the event is done with (delivered or dead-lettered),
        False when it waits for another attempt (or for the subscription to be re-enabled)."""
        assert self.sender is not None and self.config.webhook_url is not None
        pending.attempts += 1
        # The record's headers are read only when tracing is on: one less call per delivery.
        headers = pending.msg.headers() if tracing.enabled() else None
        span = tracing.start_continued("webhook.deliver", headers)
        outcome = await self.sender.send(
            self.config.webhook_url,
            self.record.secret,
            pending.webhook_id,
            pending.body if pending.body is not None else (pending.msg.value() or b""),
        )
        span.end(None if outcome.ok else outcome.error or f"HTTP {outcome.status}")
        item = self.live_item(pending, outcome)
        if outcome.ok:
            if self.mode == "exactly_once":
                self.redis.set(
                    naming.sub_key(self.record.subscription_id, f"done:{pending.webhook_id}"),
                    1,
                    ex=self.settings.idempotency_ttl_s,
                )
            cycle.counters["delivered"] += 1
            cycle.live.append({**item, "outcome": "delivered"})
            return True
        pending.last_error, pending.last_status = outcome.error, outcome.status
        cycle.last_error = outcome.error
        if outcome.gone:
            pending.attempts -= 1  # not the receiver's failure: the event waits for a resume
            pending.next_at = 0.0
            cycle.live.append({**item, "outcome": "disabled"})
            self.disable(outcome.error or "410 Gone")
            return False
        delay_s = self.policy.delay_ms(pending.attempts) / 1000
        age_ms = (time.time() + delay_s - pending.first_at) * 1000
        if (
            self.mode == "at_most_once"
            or pending.attempts >= self.policy.max_attempts
            or age_ms > self.policy.max_age_ms
        ):
            cycle.outputs.append(self.dead_letter(pending))
            cycle.counters["dead_lettered"] += 1
            cycle.live.append({**item, "outcome": "dead_lettered"})
            return True
        pending.next_at = time.monotonic() + delay_s
        cycle.counters["retried"] += 1
        cycle.live.append({**item, "outcome": "retrying", "retry_in_ms": int(delay_s * 1000)})
        return False

    def already_delivered(self, webhook_id: str) -> bool:
        key = naming.sub_key(self.record.subscription_id, f"done:{webhook_id}")
        return bool(self.redis.exists(key))

    def forward(self, msg: Message, cycle: Cycle) -> None:
        assert self.record.output_topic is not None
        # The source partition (modulo the target's count): keys stay together and in order.
        partition = (msg.partition() or 0) % self.record.output_partitions
        cycle.outputs.append(
            (self.record.output_topic, partition, msg.key(), msg.value() or b"", msg.headers())
        )
        cycle.counters["forwarded"] += 1

    def dead_letter(self, pending: Pending) -> tuple[str, int, bytes | None, bytes, Any]:
        m = pending.msg
        key = m.key()
        doc = {
            "subscription_id": self.record.subscription_id,
            "webhook_id": pending.webhook_id,
            "event": pending.event,
            "value_b64": base64.b64encode(m.value() or b"").decode(),
            "key": key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
            "error": pending.last_error,
            "http_status": pending.last_status,
            "attempts": pending.attempts,
            "first_attempt_at": pending.first_at_iso,
            "last_attempt_at": now_iso(),
            "dead_lettered_at": now_iso(),
            "source": {"topic": m.topic(), "partition": m.partition(), "offset": m.offset()},
        }
        headers = [("content-type", b"application/json")]
        return (self.record.dead_letter_topic, 0, m.key(), orjson.dumps(doc), headers)

    def live_item(self, pending: Pending, outcome: Outcome) -> dict[str, Any]:
        m = pending.msg
        return {
            "webhook_id": pending.webhook_id,
            "event_type": pending.event.get("type"),
            "partition": m.partition(),
            "offset": m.offset(),
            "attempt": pending.attempts,
            "http_status": outcome.status,
            "error": outcome.error,
        }

    async def close(self) -> None:
        if self.sender is not None:
            await self.sender.close()


def decode_event(value: bytes | None) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def webhook_id_for(event: dict[str, Any], msg: Message) -> str:
    """The CloudEvent id: the same on every redelivery, so receivers can deduplicate on it."""
    found = event.get("id")
    return (
        found
        if isinstance(found, str) and found
        else f"{msg.topic()}-{msg.partition()}-{msg.offset()}"
    )
