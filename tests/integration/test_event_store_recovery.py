"""An appender that dies mid-append, on the real stack: after reserving versions but before
producing (nothing landed: the versions go to the next writer, no gap), and after producing but
before confirming (the record landed: the indexer's view rolls it forward, no phantom, and a
retry with the same event id answers its version). The dead appender is simulated by calling
the reservation script with an already expired lease, and by a stock producer writing the
record it would have written."""

from __future__ import annotations

import asyncio
import uuid

import orjson
from confluent_kafka import Producer

from cluster.models.event_store import AppendEvent, AppendRequest
from cluster.models.streams import StreamConfig
from cluster.services.aggregates import AggregateService
from cluster.services.bus import Bus
from cluster.services.event_store import EventStoreService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings
from cluster.stores import aggregates
from cluster.stores.aggregates import AggregateStore
from pipelines.envelope import partition_for

TENANT = "acme"


def test_a_dead_appender_leaves_no_gap_and_no_phantom(stack: Settings, unique: str) -> None:
    asyncio.run(_scenario(stack, unique))


async def _scenario(stack: Settings, unique: str) -> None:
    bus = Bus(stack)
    try:
        config = StreamConfig(
            stream_name=f"es-rec-{unique}",
            topic_name=f"es-rec-{unique}",
            source_capability="tests",
            partitions=3,
        )
        sid = await EventStreamingService(bus=bus).create_stream(config, TENANT, "tests")
        service = AggregateService(bus=bus, store=EventStoreService(bus=bus))
        agg_id = f"acct-{unique}"
        agg = aggregates.keys(TENANT, "Account", agg_id)
        raw = AggregateStore(bus.redis)

        def append(expected: object, event_id: str) -> AppendRequest:
            return AppendRequest(
                stream_id=sid,
                expected_version=expected,  # type: ignore[arg-type]
                events=[AppendEvent(type="changed", payload={"id": event_id}, event_id=event_id)],
            )

        first = await service.append("Account", agg_id, append("no_stream", "e1"), TENANT, "t")
        assert first.version == 1

        # 1. Died after reserving version 2, before producing: nothing of it landed.
        lost = await raw.reserve(agg, "1", sid, uuid.uuid4().hex, 0, 1, ["lost"])
        assert lost[0] == "ok"
        second = await service.append("Account", agg_id, append(1, "e2"), TENANT, "t")
        assert [e.version for e in second.events] == [2]  # version 2 was not lost to a gap

        # 2. Died after producing version 3, before confirming: the record is in Kafka.
        held = await raw.reserve(agg, "2", sid, uuid.uuid4().hex, 0, 1, ["landed"])
        assert held[0] == "ok"
        record = {
            "specversion": "1.0",
            "id": "landed",
            "source": f"/{TENANT}/tests",
            "type": "changed",
            "time": "2026-01-01T00:00:00.000Z",
            "subject": agg_id,
            "datacontenttype": "application/json",
            "data": {"id": "landed"},
            "tenantid": TENANT,
            "streamid": sid,
            "aggregateid": agg_id,
            "aggregatetype": "Account",
            "userid": "t",
            "esbversion": 3,
        }
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
        producer.produce(
            f"esb.{TENANT}.es-rec-{unique}",
            orjson.dumps(record),
            agg_id.encode(),
            partition=partition_for(agg_id, 3),
        )
        assert producer.flush(30) == 0
        third = await service.append("Account", agg_id, append("any", "e4"), TENANT, "t")
        assert [e.version for e in third.events] == [4]  # the landed record kept version 3
        retry = await service.append("Account", agg_id, append(2, "landed"), TENANT, "t")
        assert retry.duplicate and [e.version for e in retry.events] == [3]

        history = await service.events("Account", agg_id, TENANT)
        assert [(e.version, e.event["id"]) for e in history] == [
            (1, "e1"),
            (2, "e2"),
            (3, "landed"),
            (4, "e4"),
        ]
        assert "lost" not in {e.event["id"] for e in history}
    finally:
        await bus.close()
