"""Topic admin: create, alter, describe and delete Kafka topics (blocking; call via a thread)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from cluster import naming
from cluster.errors import Conflict, NotFound, ServiceUnavailable
from cluster.kafka.clients import admin_client, new_consumer
from cluster.settings import Settings

TIMEOUT_S = 30.0
MIN_INSYNC_REPLICAS = "2"  # of topics with 3 or more replicas


_LEADER_MOVING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})


def _watermarks(consumer: Consumer, topic: str, partition: int, attempts: int = 6) -> Any:
    """(low, high) of one partition, retried while its leader is being elected (a topic just
    created, or a broker restarting, answers NOT_LEADER_FOR_PARTITION for a moment)."""
    for attempt in range(attempts):
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() not in _LEADER_MOVING or attempt == attempts - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


class TopicAdmin:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin = admin_client(settings)

    def broker_count(self) -> int:
        try:
            return len(self._admin.list_topics(timeout=10).brokers)
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka is unreachable: {exc}") from None

    def exists(self, topic: str) -> bool:
        return topic in self._admin.list_topics(timeout=10).topics

    def partition_count(self, topic: str) -> int:
        meta = self._admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        return len(meta.partitions) if meta is not None and meta.error is None else 0

    def create(
        self, topic: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        """With 3 or more replicas an acks=all write needs 2 of them in sync (unless `configs`
        says otherwise): a broker may die without a write being refused or an ack being lost."""
        if replication_factor >= 3:
            configs = {"min.insync.replicas": MIN_INSYNC_REPLICAS, **configs}
        spec = NewTopic(topic, partitions, replication_factor, config=configs)
        try:
            self._admin.create_topics([spec], request_timeout=TIMEOUT_S)[topic].result(TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                raise Conflict(f"Kafka topic {topic} already exists") from None
            raise ServiceUnavailable(f"could not create topic {topic}: {exc}") from None

    def configs(self, topic: str) -> dict[str, str]:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        entries = self._admin.describe_configs([resource])[resource].result(TIMEOUT_S)
        return {name: entry.value for name, entry in entries.items()}

    def alter(self, topic: str, configs: dict[str, str]) -> None:
        entries = [
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in configs.items()
        ]
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
        self._admin.incremental_alter_configs([resource])[resource].result(TIMEOUT_S)

    def add_partitions(self, topic: str, total: int) -> None:
        self._admin.create_partitions([NewPartitions(topic, total)])[topic].result(TIMEOUT_S)

    def delete(self, topic: str) -> None:
        try:
            self._admin.delete_topics([topic], request_timeout=TIMEOUT_S)[topic].result(TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """(low, high) offsets per partition."""
        consumer = new_consumer(self._settings, naming.reader_group("admin"))
        try:
            # Loading the topic's metadata first: a fresh client asked for offsets of a topic it
            # has not seen answers "unknown partition". A topic created a moment ago may not be
            # in every broker's metadata yet: asked again for about 1.5 s before a 404.
            for delay_s in (0.1, 0.2, 0.4, 0.8, None):
                meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
                if meta is not None and meta.error is None:
                    break
                if delay_s is None:
                    raise NotFound(f"Kafka topic {topic} does not exist")
                time.sleep(delay_s)
            return {p: _watermarks(consumer, topic, p) for p in sorted(meta.partitions)}
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka did not answer for {topic}: {exc}") from None
        finally:
            consumer.close()

    def health(self) -> dict[str, Any]:
        meta = self._admin.list_topics(timeout=5)
        return {"brokers": len(meta.brokers), "topics": len(meta.topics)}
