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

from typing import Any

from peer_common import Clock, window_arguments, write_results
from quix_common import new_app
from quixstreams.dataframe.windows import Count, Sum


def main() -> None:
    args = window_arguments(__doc__)

    clock = Clock()
    app = new_app(args.bootstrap)
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="str")
    sdf = app.dataframe(topic)
    results: list[dict[str, Any]] = []

    def on_event(_value: Any) -> None:
        clock.saw_event()

    def on_result(value: Any, key: Any, _timestamp: int, _headers: Any) -> None:
        results.append({"key": key, "window_start_ms": value["start"], **value})
        if len(results) >= args.expected and clock.finish():
            app.stop()

    sdf = sdf.update(on_event)
    sdf = sdf.apply(lambda value: {"amount": value["data"]["amount"]})
    sdf = sdf.tumbling_window(duration_ms=1000).agg(orders=Count(), revenue=Sum("amount"))
    sdf = sdf.final(closing_strategy="partition")
    sdf = sdf.update(on_result, metadata=True)
    app.run()
    clock.report(windows=len(results))
    fields = ("key", "window_start_ms", "orders", "revenue")
    write_results(args.results_out, ({k: r[k] for k in fields} for r in results))


if __name__ == "__main__":
    main()
