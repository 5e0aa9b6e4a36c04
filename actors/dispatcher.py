"""Subscription dispatchers: consume with the subscription's group -> filter -> deliver -> commit.

`Dispatcher` is a plain asyncio class (usable without Ray); `DispatcherActor` is its thin Ray
shell: a detached, named actor (`esb-sub-<id>-<i>` in namespace `esb`, num_cpus=0,
max_restarts=-1) that runs the dispatcher in a thread from its constructor, so Ray's own restart
of a killed actor resumes dispatching with no supervisor of ours.

One cycle: consume up to batch_size records -> (at_most_once: commit first) -> deliver each
partition's records in order, partitions concurrently -> one Kafka transaction with the dead
letters (and forwarded records) plus the consumed offsets (send_offsets_to_transaction with the
consumer's group metadata) -> counters and live updates in Redis.

Fencing: static group membership (`group.instance.id`) plus one transactional id per dispatcher
slot. A restarted dispatcher takes its predecessor's membership and transactional id over; the
broker then refuses the zombie's offsets (fenced member) and its transactions (fenced producer
epoch), and aborts whatever transaction it left open.

Delivery itself (webhooks with retries, backoff and dead letters; forwarding; decrypting
encrypted streams) is in actors.delivery; what a cycle commits and reports, in
actors.dispatch_cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import defaultdict
from typing import Any

import orjson
import ray
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from redis import Redis

from actors.delivery import Delivery, Pending, decode_event, webhook_id_for
from actors.dispatch_cycle import TP, Cycle, now_iso
from cluster import naming
from cluster.errors import DecryptionFailed
from cluster.kafka.clients import consumer_config, producer_config
from cluster.models.subscriptions import EventFilter, SubscriptionRecord
from cluster.observability import metrics
from cluster.observability.setup import setup_process
from cluster.settings import Settings, get_settings

log = logging.getLogger("esb.dispatcher")
STATE_POLL_S = 0.5
CYCLE_BUDGET_S = 60.0  # stop starting new deliveries in a cycle after this (max.poll.interval)


class Dispatcher:
    """Owns what the group assigns it of the subscription's topics until closed or fenced."""

    def __init__(self, settings: Settings, record: SubscriptionRecord, index: int = 0) -> None:
        self.settings, self.record, self.index = settings, record, index
        self.config = record.config
        self.mode = record.config.delivery_mode
        self.filter = EventFilter(record.config)
        self.redis = Redis.from_url(settings.redis, socket_timeout=30)
        self.state = "active"
        self._state_checked = 0.0
        self.assigned: set[TP] = set()
        self.next_offset: dict[TP, int] = {}
        self.blocked: dict[TP, Pending] = {}
        self.producer = Producer(
            producer_config(
                settings,
                **{
                    "transactional.id": record.transactional_id(index),
                    "transaction.timeout.ms": 120_000,
                },
            )
        )
        self.producer.init_transactions(60)  # fences (and aborts) a predecessor's transaction
        self.consumer = Consumer(
            consumer_config(
                settings,
                record.group_id,
                **{
                    "group.instance.id": record.instance_id(index),
                    "client.id": f"esb-dispatcher-{record.subscription_id}-{index}",
                    "session.timeout.ms": 10_000,
                    "max.poll.interval.ms": 600_000,
                },
            )
        )
        self.consumer.subscribe(
            [record.kafka_topic, record.retry_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self.delivery = Delivery(settings, record, self.redis, disable=self._disable)
        self.lag = metrics.LagReporter(record.tenant_id, record.group_id)

    # --- group membership ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.add(key)
            self.blocked.pop(key, None)
            self.next_offset.pop(key, None)
        if self.state != "active" and partitions:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A revoked partition's pending retry is dropped: its next owner starts it again from
        the committed offset (the attempt count restarts there)."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.discard(key)
            self.blocked.pop(key, None)
            self.next_offset.pop(key, None)
        with contextlib.suppress(KafkaException):
            consumer.unassign()

    # --- control state ------------------------------------------------------------------------

    def _sync_state(self) -> None:
        now = time.monotonic()
        if now - self._state_checked < STATE_POLL_S:
            return
        self._state_checked = now
        raw = self.redis.get(naming.sub_key(self.record.subscription_id, "state"))
        state = raw.decode() if isinstance(raw, bytes) else (raw or "active")
        if state != self.state:
            self._set_state(state)

    def _set_state(self, state: str) -> None:
        was_active, self.state = self.state == "active", state
        tps = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        if was_active and state != "active" and tps:
            self.consumer.pause(tps)
        elif not was_active and state == "active":
            for t, p in sorted(self.assigned):
                if (t, p) in self.blocked:
                    self.blocked[(t, p)].next_at = 0.0  # retry it right away
                    continue
                self._resume((t, p))

    def _resume(self, tp: TP) -> None:
        """Continue a partition at the first offset not yet done (records fetched past it were
        dropped when it was blocked)."""
        part = TopicPartition(tp[0], tp[1])
        if tp in self.next_offset:
            self.consumer.seek(TopicPartition(tp[0], tp[1], self.next_offset[tp]))
        self.consumer.resume([part])

    def _disable(self, why: str) -> None:
        """410 Gone: the subscription is disabled (resume re-enables it)."""
        self.redis.set(naming.sub_key(self.record.subscription_id, "state"), "disabled")
        self.redis.publish(
            naming.sub_key(self.record.subscription_id, "live"),
            orjson.dumps({"type": "state", "state": "disabled", "reason": why}),
        )
        self._set_state("disabled")

    # --- the loop -----------------------------------------------------------------------------

    async def run(self, should_stop: Any = lambda: False) -> None:
        try:
            while not should_stop():
                await self.step()
        finally:
            await self.close()

    async def step(self) -> None:
        self._sync_state()
        self.lag.maybe_report(self.consumer)
        if self.state != "active":
            stray = await asyncio.to_thread(self.consumer.consume, 100, STATE_POLL_S)
            self._remember_unprocessed(stray)
            return
        now = time.monotonic()
        due = [tp for tp, p in self.blocked.items() if p.next_at <= now]
        wait = 0.0 if due else STATE_POLL_S
        if self.blocked and not due:
            wait = max(0.0, min(wait, min(p.next_at for p in self.blocked.values()) - now))
        messages = await asyncio.to_thread(self.consumer.consume, self.config.batch_size, wait)
        groups: dict[TP, list[Message]] = defaultdict(list)
        for m in messages:
            if m.error() is not None:
                continue
            tp = (m.topic() or "", m.partition() or 0)
            if tp in self.blocked or _off(m) < self.next_offset.get(tp, -1):
                continue  # dropped on blocking; fetched again after the seek on resume
            groups[tp].append(m)
        if not groups and not due:
            return
        cycle = Cycle()
        if self.mode == "at_most_once" and groups:
            done = [TopicPartition(t, p, _off(ms[-1]) + 1) for (t, p), ms in groups.items()]
            await asyncio.to_thread(self.consumer.commit, offsets=done, asynchronous=False)
        deadline = time.monotonic() + CYCLE_BUDGET_S
        await asyncio.gather(
            *(self._partition(tp, ms, cycle, deadline) for tp, ms in groups.items()),
            *(self._retry(tp, cycle) for tp in due),
        )
        with_offsets = self.mode != "at_most_once"  # at_most_once committed them first
        await asyncio.to_thread(
            cycle.commit, self.producer, self.consumer, with_offsets=with_offsets
        )
        for tp, ms in groups.items():  # records a cycle left over (budget, 410): read again
            first = self.next_offset.setdefault(tp, _off(ms[0]))
            if tp not in self.blocked and first <= _off(ms[-1]):
                self.consumer.seek(TopicPartition(tp[0], tp[1], first))
        for tp in cycle.resume:
            if tp in self.assigned and self.state == "active":
                self._resume(tp)
        cycle.report(self.redis, self.record.subscription_id)
        metrics.record_deliveries(
            self.record.tenant_id, self.record.subscription_id, cycle.counters
        )

    def _remember_unprocessed(self, messages: list[Message]) -> None:
        for m in messages:
            if m.error() is None:
                tp = (m.topic() or "", m.partition() or 0)
                self.next_offset[tp] = min(self.next_offset.get(tp, _off(m)), _off(m))

    def _advance(self, tp: TP, msg: Message, cycle: Cycle) -> None:
        self.next_offset[tp] = cycle.advanced[tp] = _off(msg) + 1

    async def _partition(
        self, tp: TP, messages: list[Message], cycle: Cycle, deadline: float
    ) -> None:
        """One partition's records in order; stops at the first that must wait for a retry."""
        bodies = None
        if self.delivery.cipher is not None:
            # once per batch, in a thread (key store on a cache miss)
            bodies = await asyncio.to_thread(self.delivery.open_all, messages)
        for i, m in enumerate(messages):
            if self.mode != "at_most_once" and time.monotonic() > deadline:
                return
            if self.state != "active":  # disabled by a 410 meanwhile
                return
            if self.config.target == "kafka" and self.filter.everything:
                self.delivery.forward(m, cycle)
                self._advance(tp, m, cycle)
                continue
            event = decode_event(m.value())
            if event is None or not self.filter.matches(event):
                cycle.counters["undecodable" if event is None else "filtered_out"] += 1
                self._advance(tp, m, cycle)
                continue
            if self.config.target == "kafka":
                self.delivery.forward(m, cycle)
                self._advance(tp, m, cycle)
                continue
            pending = Pending(m, event, webhook_id_for(event, m))
            if bodies is not None:
                opened = bodies[i]
                if isinstance(opened, DecryptionFailed):
                    self.delivery.undecryptable(pending, opened, cycle)
                    self._advance(tp, m, cycle)
                    continue
                pending.body = opened
            if self.mode == "exactly_once" and self.delivery.already_delivered(pending.webhook_id):
                cycle.counters["duplicates_skipped"] += 1
                self._advance(tp, m, cycle)
                continue
            if not await self.delivery.attempt(pending, cycle):
                self.blocked[tp] = pending
                self.consumer.pause([TopicPartition(tp[0], tp[1])])
                self.next_offset[tp] = _off(m)
                return
            self._advance(tp, m, cycle)

    async def _retry(self, tp: TP, cycle: Cycle) -> None:
        pending = self.blocked[tp]
        if await self.delivery.attempt(pending, cycle):
            del self.blocked[tp]
            self._advance(tp, pending.msg, cycle)
            cycle.resume.append(tp)

    # --- closing ------------------------------------------------------------------------------

    async def close(self) -> None:
        await self.delivery.close()
        with contextlib.suppress(RuntimeError, KafkaException):
            await asyncio.to_thread(self.consumer.close)
        with contextlib.suppress(RuntimeError, KafkaException):
            self.producer.flush(10)
        self.redis.close()


def _off(msg: Message) -> int:
    return msg.offset() or 0


def run_dispatcher(
    settings: Settings, record: SubscriptionRecord, index: int, stop: threading.Event
) -> None:
    """Run (and on any error rebuild) the dispatcher until `stop` or the subscription is
    cancelled. A rebuilt dispatcher resumes from the committed offsets."""
    redis = Redis.from_url(settings.redis)
    backoff_s = 1.0
    while not stop.is_set():
        if redis.get(naming.sub_key(record.subscription_id, "state")) in (b"cancelled", None):
            return
        try:
            asyncio.run(Dispatcher(settings, record, index).run(stop.is_set))
            return
        except Exception as exc:
            log.exception("dispatcher %s/%d failed; rebuilding", record.subscription_id, index)
            redis.hset(
                naming.sub_key(record.subscription_id, "stats"),
                mapping={
                    "last_error": f"dispatcher: {type(exc).__name__}: {exc}"[:500],
                    "last_error_at": now_iso(),
                },
            )
            stop.wait(backoff_s)
            backoff_s = min(backoff_s * 2, 30.0)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=4)  # type: ignore[call-overload]
class DispatcherActor:
    """The Ray shell. Dispatching starts in the constructor, so a restart by Ray resumes it."""

    def __init__(self, record: dict[str, Any], index: int) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        config = get_settings()  # from the runtime_env the launcher gives (worker_env)
        setup_process(config, "dispatcher")
        subscription = SubscriptionRecord.model_validate(record)
        # Counted before the actor answers any call: a start is never missed by a status read.
        stats = naming.sub_key(subscription.subscription_id, "stats")
        Redis.from_url(config.redis).hincrby(stats, "dispatcher_starts", 1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=run_dispatcher,
            args=(config, subscription, index, self._stop),
            name="esb-dispatcher",
            daemon=True,
        )
        self._thread.start()

    def pid(self) -> int:
        return os.getpid()

    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 20.0) -> bool:
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
