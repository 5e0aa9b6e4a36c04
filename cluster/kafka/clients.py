"""Kafka clients with the bus's defaults, and an asyncio face for the idempotent producer.

Every client the bus makes starts from :func:`client_config`, so the settings' security
protocol and CA reach all of them:

>>> client_config(Settings(kafka_bootstrap_servers="b:9094", kafka_security_protocol="SSL",
...                        kafka_ssl_ca_location="/tls/ca.pem"))
{'bootstrap.servers': 'b:9094', 'security.protocol': 'SSL', 'ssl.ca.location': '/tls/ca.pem'}
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cluster.errors import ServiceUnavailable
from cluster.settings import Settings


def security_config(protocol: str, ca_location: Path | str | None = None) -> dict[str, str]:
    """librdkafka's security properties, spelled out here only. The broker's certificate and
    host name are always verified (librdkafka's default endpoint identification is https)."""
    config = {"security.protocol": protocol}
    if ca_location is not None and protocol.upper().endswith("SSL"):
        config["ssl.ca.location"] = str(ca_location)
    return config


def client_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Where the brokers are and how to reach them: the base of every client's config."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        **security_config(settings.kafka_security_protocol, settings.kafka_ssl_ca_location),
        **overrides,
    }


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent, acks=all: a retried send never duplicates or reorders within a partition.
    `linger.ms` is KAFKA_LINGER_MS (README "Front door": latency against batching)."""
    return client_config(
        settings,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": settings.kafka_linger_ms,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            # The bus refuses larger events itself (413), so librdkafka never has to.
            "message.max.bytes": max(1_048_576, settings.max_event_bytes + 65_536),
            "message.timeout.ms": int(settings.publish_timeout_s * 1000),
            **overrides,
        },
    )


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    return client_config(
        settings,
        **{
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **overrides,
        },
    )


def admin_client(settings: Settings) -> AdminClient:
    """Keep the client referenced until its futures are done: a collected client never
    completes them (`admin_client(s).op(...).result(t)` waits the whole `t`)."""
    return AdminClient(client_config(settings))


def delete_group(settings: Settings, group_id: str, deadline_s: float = 60.0) -> bool:
    """Delete a consumer group once its members are gone; True when it is gone. A static member
    (group.instance.id, as dispatchers use) never leaves on close: the broker drops it only
    when its session times out, and until then the group is not empty."""
    admin = admin_client(settings)
    end = time.monotonic() + deadline_s
    while True:
        try:
            admin.delete_consumer_groups([group_id], request_timeout=15)[group_id].result(20)
            return True
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.GROUP_ID_NOT_FOUND:
                return True
            if code != KafkaError.NON_EMPTY_GROUP or time.monotonic() > end:
                return False
        time.sleep(1.0)


def new_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))


_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def committed_offsets(
    consumer: Consumer, partitions: list[TopicPartition], attempts: int = 6
) -> list[TopicPartition]:
    """consumer.committed(), retried while the group coordinator moves or loads (it answers
    NOT_COORDINATOR for a while after a group first appears); then ServiceUnavailable."""
    for attempt in range(attempts):
        try:
            return consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            error = exc.args[0]
            passing = error.code() in _COORDINATOR_MOVING or error.retriable()
            if not passing or attempt == attempts - 1:
                raise ServiceUnavailable(f"Kafka did not give committed offsets: {exc}") from None
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def offsets_for_time(
    consumer: Consumer, topic: str, marks: dict[int, tuple[int, int]], time_ms: int
) -> dict[int, int]:
    """Per partition of `marks` ((low, high) watermarks), the first offset whose record
    timestamp (Kafka's: publish or log-append time) is >= time_ms; the high watermark where
    no record is that recent."""
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, time_ms) for p in sorted(marks)], timeout=10
    )
    return {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found}


@dataclass(frozen=True)
class Delivery:
    """The broker's answer for one record: where it landed, or why it did not."""

    partition: int = -1
    offset: int = -1
    error: str | None = None


class AsyncProducer:
    """A confluent-kafka Producer polled by one background thread, awaited from asyncio.

    `send_many` returns after the broker acknowledged (or refused) every record it was given.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="esb-producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send_many(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        headers: list[tuple[str, str | bytes | None]] | None = None,
        timeout_s: float = 60.0,
        partitions: Sequence[int] | None = None,
    ) -> list[Delivery]:
        """`partitions`, when given, places record i in partitions[i] (else the key decides)."""
        if not records:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        results: list[Delivery] = [Delivery(error="not sent")] * len(records)
        remaining = [len(records)]

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        # Delivery reports run on the poller thread only (poll and flush are called there), so
        # the count needs no lock.
        def report(index: int, err: KafkaError | None, msg: Message) -> None:
            results[index] = (
                Delivery(error=err.str())
                if err is not None
                else Delivery(partition=msg.partition() or 0, offset=msg.offset() or 0)
            )
            remaining[0] -= 1
            if remaining[0] == 0:
                loop.call_soon_threadsafe(finish)

        for index, (key, value) in enumerate(records):
            while True:
                try:
                    self._producer.produce(
                        topic,
                        value,
                        key,
                        partition=-1 if partitions is None else partitions[index],  # -1: by key
                        headers=headers,
                        on_delivery=functools.partial(report, index),
                    )
                    break
                except BufferError:  # local queue full: let the poller drain it
                    await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            raise ServiceUnavailable(
                f"Kafka did not acknowledge {remaining[0]} of {len(records)} records "
                f"within {timeout_s:.0f}s"
            ) from None
        return results

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._poller.join(timeout=1.0)
        self._producer.flush(timeout_s)
