"""The indexer asks Redis for the stream list when a batch brings a topic it does not know, but
a topic that is no stream (dead letters, pipeline outputs, another client's) does not make every
batch ask again: only the 5 s staleness does."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from cluster.services import indexing
from cluster.settings import Settings


class _Msg:
    def __init__(self, topic: str, offset: int) -> None:
        self._topic, self._offset = topic, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return b"not a cloudevent"


class _Consumer:
    def __init__(self) -> None:
        self.batches: list[list[_Msg]] = []

    def subscribe(self, topics: list[str]) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, **kwargs: Any) -> None:
        pass


@pytest.fixture
def indexer(monkeypatch: pytest.MonkeyPatch) -> indexing.EventIndexer:
    redis = fakeredis.FakeRedis()
    monkeypatch.setattr(indexing.Redis, "from_url", lambda *a, **k: redis)
    monkeypatch.setattr(indexing, "new_consumer", lambda *a, **k: _Consumer())
    return indexing.EventIndexer(Settings())


def test_a_topic_that_is_no_stream_asks_once_until_stale(
    indexer: indexing.EventIndexer, monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshes: list[int] = []
    real = indexer._refresh_streams
    monkeypatch.setattr(indexer, "_refresh_streams", lambda: (refreshes.append(1), real()))
    consumer: Any = indexer.consumer
    consumer.batches = [[_Msg("esb.acme.dlq", i)] for i in range(5)]
    for _ in range(5):
        indexer.run_once()
    assert len(refreshes) == 1
    consumer.batches = [[_Msg("esb.acme.new-stream", 0)]]  # another unknown topic: asks again
    indexer.run_once()
    assert len(refreshes) == 2
    indexer._refreshed_at -= indexing.STREAMS_REFRESH_S + 1  # stale: asks again
    consumer.batches = [[_Msg("esb.acme.dlq", 9)]]
    indexer.run_once()
    assert len(refreshes) == 3
