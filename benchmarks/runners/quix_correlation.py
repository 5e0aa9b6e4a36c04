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
import json
import resource
import sys
import tempfile
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from quixstreams import Application
from quixstreams.state import State

AFTER_MS = 60_000
WITHIN_MS, TIMES, RISK_ABOVE = 60_000, 3, 0.5


def usage() -> tuple[float, int]:
    """CPU seconds and VmHWM (ru_maxrss would include the parent's peak, carried over exec)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return ru.ru_utime + ru.ru_stime, peak * 1024


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

    state_dir = tempfile.mkdtemp(prefix="quix-bench-")
    cpu0, _ = usage()
    t0 = time.perf_counter()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"quix-bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
    )
    results: list[dict[str, Any]] = []
    first: list[float] = []
    done: list[float] = []
    events = [0]

    def on_event(_value: Any) -> None:
        if not first:
            first.append(time.perf_counter() - t0)
        events[0] += 1
        if events[0] >= total and not done:
            done.append(time.perf_counter() - t0)
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
    seconds = done[0] if done else time.perf_counter() - t0
    cpu, peak = usage()
    line = {
        "events": events[0],
        "seconds": seconds,
        "cpu_s": cpu - cpu0,
        "peak_rss_bytes": peak,
        "first_record_s": first[0] if first else None,
        "results": len(results),
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    if args.results_out:
        with open(args.results_out, "w") as out:
            for r in results:
                out.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
