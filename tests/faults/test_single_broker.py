"""The single-broker stack (`esb up`'s default Kafka) restarted under load: its only broker
SIGKILLed while a client publishes over HTTP, then started again the way `esb up` does: once
at once (the batch in flight is delivered when it is back), once after the client's batch has
failed (down past PUBLISH_TIMEOUT_S, the client sends it again). Afterwards every event the
client sent is acknowledged and on the topic exactly once, where its receipt says (the
Publisher's receipts are the oracle).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.brokers import ClusterStack, Publisher, check_the_topic, running
from tests.integration.conftest import create_stream
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

KILLS = 2
PARTITIONS = 3
TENANT = "proc"


@pytest.fixture(scope="module")
def single(request: pytest.FixtureRequest) -> Iterator[ClusterStack]:
    yield from running(request, brokers=1)


def _event(batch: int, index: int) -> dict[str, Any]:
    return {
        "event_type": "order.placed",
        "source_capability": "shop",
        "aggregate_id": f"k{(batch * 7 + index) % 20}",
        "aggregate_type": "Order",
        "event_id": f"one-{batch}-{index}",
        "payload": {"amount": index % 97 + 1},
    }


def _wait_for_an_error(publisher: Publisher) -> None:
    """Until the client has had one more answer other than 200 (or no answer at all)."""

    def errors() -> int:
        return sum(n for answer, n in publisher.answers.items() if answer != "200")

    before = errors()
    wait_for(lambda: errors() > before or publisher.fatal, "an error answer")


def test_acknowledged_events_survive_restarts_of_the_only_broker(single: ClusterStack) -> None:
    assert sorted(n for n in single.services() if n.startswith("kafka")) == ["kafka"]
    began = time.monotonic()
    with single.client(TENANT) as http:
        stream = create_stream(http, TENANT, "one-broker", partitions=PARTITIONS)
        who = {"stream_id": stream["stream_id"], "tenant_id": TENANT, "user_id": "chaos"}
        publisher = Publisher(http, who, _event).start()
        downtimes = []
        try:
            publisher.wait_acknowledged(3, "the first batches")
            for kill in range(KILLS):
                single.kill("kafka")
                if kill % 2:  # down past PUBLISH_TIMEOUT_S: the client meets errors, retries
                    _wait_for_an_error(publisher)
                restarted = time.monotonic()
                single.restart()
                publisher.wait_acknowledged(3, "acknowledgements after the restart")
                downtimes.append(round(time.monotonic() - restarted, 1))
        finally:
            publisher.stop()
        print(
            f"\n[faults] {KILLS} kills of the only broker in {time.monotonic() - began:.0f}s; "
            f"s from restart to 3 batches acknowledged {downtimes}; answers "
            f"{dict(publisher.answers)}; {publisher.batches} batches, {len(publisher.sent)} "
            f"events, slowest answer {publisher.slowest_s:.1f}s"
        )
        check_the_topic(single, stream["kafka_topic"], publisher)
