"""Watermarks are retried while a partition's leader is elected, and only then."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from cluster.kafka import topics


class FlakyConsumer:
    def __init__(self, failures: list[int]) -> None:
        self.failures = failures
        self.calls = 0

    def get_watermark_offsets(self, tp: object, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.failures:
            raise KafkaException(KafkaError(self.failures.pop(0)))
        return (0, 42)


def test_a_leader_election_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics.time, "sleep", lambda _s: None)
    consumer = FlakyConsumer([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
    assert topics._watermarks(consumer, "t", 0) == (0, 42)  # type: ignore[arg-type]
    assert consumer.calls == 3


def test_other_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics.time, "sleep", lambda _s: None)
    consumer = FlakyConsumer([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        topics._watermarks(consumer, "t", 0)  # type: ignore[arg-type]
    assert consumer.calls == 1
