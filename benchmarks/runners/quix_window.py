"""Quix Streams (its current PyPI release) doing the same 1 s tumbling count and sum per key on the
same topic, in-process, as its docs show. Runs in its own venv (see benchmarks/peers.py): Quix pins
confluent-kafka < 2.13 and pydantic < 2.14, older than the product's. Imports nothing from the
project.

Windows use the Kafka record timestamp (the pre-loader sets it to the event time), the cheapest
time source Quix has, and close per partition (`final(closing_strategy="partition")`) so the
sentinel event closes every window as it does for our pipeline. Other settings are defaults
(at-least-once, RocksDB state with changelog topics).

    python quix_window.py --bootstrap HOST:PORT --topic TOPIC --expected N --results-out F
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

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum


def usage() -> tuple[float, int]:
    """CPU seconds and VmHWM (ru_maxrss would include the parent's peak, carried over exec)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return ru.ru_utime + ru.ru_stime, peak * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expected", type=int, required=True, help="windows to wait for")
    parser.add_argument("--results-out", default=None)
    args = parser.parse_args()

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
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="str")
    sdf = app.dataframe(topic)
    results: list[dict[str, Any]] = []
    first: list[float] = []
    done: list[float] = []
    events = [0]

    def on_event(_value: Any) -> None:
        if not first:
            first.append(time.perf_counter() - t0)
        events[0] += 1

    def on_result(value: Any, key: Any, _timestamp: int, _headers: Any) -> None:
        results.append({"key": key, "window_start_ms": value["start"], **value})
        if len(results) >= args.expected and not done:
            done.append(time.perf_counter() - t0)
            app.stop()

    sdf = sdf.update(on_event)
    sdf = sdf.apply(lambda value: {"amount": value["data"]["amount"]})
    sdf = sdf.tumbling_window(duration_ms=1000).agg(orders=Count(), revenue=Sum("amount"))
    sdf = sdf.final(closing_strategy="partition")
    sdf = sdf.update(on_result, metadata=True)
    app.run()
    seconds = done[0] if done else time.perf_counter() - t0
    cpu, peak = usage()
    line = {
        "events": events[0],
        "seconds": seconds,
        "cpu_s": cpu - cpu0,
        "peak_rss_bytes": peak,
        "first_record_s": first[0] if first else None,
        "windows": len(results),
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    if args.results_out:
        with open(args.results_out, "w") as out:
            for r in results:
                row = {k: r[k] for k in ("key", "window_start_ms", "orders", "revenue")}
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
