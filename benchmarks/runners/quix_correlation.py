"""Quix Streams (the release pinned in benchmarks/quix-requirements.txt) doing the correlation
scenario's work on the same pre-loaded topics, in-process, in its own venv (see
benchmarks/peers.py). Imports nothing from the project.

- ``--mode join``: ``StreamingDataFrame.join_interval`` of order.created (left topic) with
  payment.* (right topic), ``how="inner"``, ``backward_ms=0``, ``forward_ms=60000``: the same
  interval as the bus's ``before_ms: 0, after_ms: 60000``. Quix aligns the two co-partitioned
  topics by record timestamp (the pre-loader sets it to the event time).
- ``--mode pattern``: three ``login.failed`` with ``ip_risk > 0.5`` within 60 s per key, skip
  past the last event, written with Quix's stateful API (``apply(..., stateful=True)``, State
  ``get``/``set`` in RocksDB): per key, the qualifying events since the last match that are
  still within 60 s of the newest; the third one completes a match and clears the state.
  On in-order data that is the bus's relaxed-contiguity, past_last_event semantics.

The clock runs until every record of the topics was processed (their end offsets, read before
the start). Other settings are Quix defaults (at-least-once, RocksDB state, changelog topics).

    python quix_correlation.py --mode join --bootstrap HOST:PORT --topic ORDERS \\
        --right-topic PAYMENTS --results-out F
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from peer_common import Clock, write_results
from quix_common import new_app
from quixstreams.state import State

AFTER_MS = 60_000
WITHIN_MS, TIMES, RISK_ABOVE = 60_000, 3, 0.5


def records_on(bootstrap: str, topics: list[str]) -> int:
    """How many records the topics hold (high - low watermark of every partition)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    total = 0
    for topic in topics:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
    consumer.close()
    return total


def detect(value: dict[str, Any], key: Any, timestamp: int, _headers: Any, state: State) -> Any:
    """Three qualifying login failures of one key within 60 s; state: [[time, id], ...]."""
    if value["type"] != "login.failed":
        return None
    risk = value["data"].get("ip_risk")
    if risk is None or not risk > RISK_ABOVE:
        return None
    recent = [e for e in state.get("recent", []) if timestamp - e[0] < WITHIN_MS]
    recent.append([timestamp, value["id"]])
    if len(recent) < TIMES:
        state.set("recent", recent)
        return None
    state.set("recent", [])  # past_last_event: the next match starts after this one
    return {
        "key": key,
        "start_ms": recent[0][0],
        "end_ms": timestamp,
        "ids": [i for _, i in recent],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["join", "pattern"], required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--right-topic", default=None, help="the join's right topic")
    parser.add_argument("--results-out", default=None)
    args = parser.parse_args()
    topics = [args.topic] + ([args.right_topic] if args.mode == "join" else [])
    total = records_on(args.bootstrap, topics)

    clock = Clock()
    app = new_app(args.bootstrap)
    results: list[dict[str, Any]] = []

    def on_event(_value: Any) -> None:
        clock.saw_event()
        if clock.events >= total and clock.finish():
            app.stop()  # takes effect once this record went through the whole dataframe

    def source(name: str) -> Any:
        topic = app.topic(name, value_deserializer="json", key_deserializer="str")
        return app.dataframe(topic).update(on_event)

    if args.mode == "join":
        left = source(args.topic).filter(lambda v: v["type"] == "order.created")
        right = source(args.right_topic).filter(lambda v: v["type"].startswith("payment."))
        sdf = left.join_interval(
            right,
            how="inner",
            on_merge=lambda lv, rv: {"left_event_id": lv["id"], "right_event_id": rv["id"]},
            backward_ms=0,
            forward_ms=AFTER_MS,
        )
        sdf = sdf.update(lambda v, key, _ts, _h: results.append({"key": key, **v}), metadata=True)
    else:
        sdf = source(args.topic).apply(detect, stateful=True, metadata=True)
        sdf = sdf.filter(lambda v: v is not None).update(results.append)
    app.run()
    clock.report(results=len(results))
    write_results(args.results_out, results)


if __name__ == "__main__":
    main()
