"""Bytewax (the release pinned in benchmarks/bytewax-requirements.txt) doing the same 1 s tumbling
count and sum per key on the same topic as quix_window.py, in-process, one worker, with its own
Kafka source (bytewax.connectors.kafka.KafkaSource) and windowing operator
(bytewax.operators.windowing.fold_window over a TumblingWindower and an EventClock). Runs in its
own venv (see benchmarks/peers.py); imports nothing from the project.

- Event time is the Kafka record timestamp (the pre-loader sets it to the event time), as for
  Quix: the cheapest time source either offers.
- The watermark follows event time only: EventClock's system clock is frozen (`now_getter`) and
  it never schedules wake-ups (`to_system_utc` -> None), with no wait. With its default system
  clock the watermark also advances with wall time: an in-order event with its key's latest
  timestamp, seen a moment later, counts as late and is dropped (9 of 30,000 in
  tests/unit/test_bench_bytewax.py), and a reader slower than the topic's 50,000 events per
  event-second would drop whole windows. Quix and our pipeline close windows by event time
  alone too. Bytewax keeps a clock per key, so a key's windows close on that key's next window
  or at the end of the input (EOF), not on the sentinel.
- `ordered=False`: count and sum do not depend on order, and the events are in order anyway.
- The source stops at the end of the topic (`tail=False`), the dataflow ends at EOF; the clock
  stops at the last window result (all `--expected` of them), as Quix's does.

    python bytewax_window.py --bootstrap HOST:PORT --topic TOPIC --expected N --results-out F
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main
from peer_common import Clock, window_arguments, write_results

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=1)
Order = tuple[datetime, int]  # event time, amount
Totals = tuple[int, int]  # orders, revenue


class ListSink(DynamicSink[dict[str, Any]]):
    """Collects the results in memory (written to --results-out after the run) and stops the
    clock when the last expected one arrives."""

    def __init__(self, clock: Clock, expected: int) -> None:
        self.clock, self.expected = clock, expected
        self.rows: list[dict[str, Any]] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ListPartition:
        return _ListPartition(self)


class _ListPartition(StatelessSinkPartition[dict[str, Any]]):
    def __init__(self, sink: ListSink) -> None:
        self.sink = sink

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        self.sink.rows.extend(items)
        if len(self.sink.rows) >= self.sink.expected:
            self.sink.clock.finish()


def build_flow(source: Any, clock: Clock, sink: ListSink, late: list[int]) -> Dataflow:
    """The dataflow over any source of KafkaSourceMessage (tests feed a TestingSource)."""

    def parse(msg: KafkaSourceMessage[bytes, bytes]) -> tuple[str, Order]:
        clock.saw_event()  # here, not in an operator of its own: one Python step less per event
        _type, ms = msg.timestamp or (0, 0)
        amount = json.loads(msg.value)["data"]["amount"]
        return msg.key.decode(), (EPOCH + timedelta(milliseconds=ms), amount)

    def add(totals: Totals, order: Order) -> Totals:
        return totals[0] + 1, totals[1] + order[1]

    def merge(a: Totals, b: Totals) -> Totals:
        return a[0] + b[0], a[1] + b[1]

    def row(key_window: tuple[str, tuple[int, Totals]]) -> dict[str, Any]:
        key, (window_id, (orders, revenue)) = key_window
        # Windows are aligned to the epoch, so window n starts at n seconds.
        start_ms = window_id * 1000
        return {"key": key, "window_start_ms": start_ms, "orders": orders, "revenue": revenue}

    flow = Dataflow("bytewax-window-bench")
    orders = op.map("parse", op.input("kafka", flow, source), parse)
    event_time: EventClock[Order] = EventClock(
        ts_getter=lambda order: order[0],
        wait_for_system_duration=timedelta(0),
        now_getter=lambda: EPOCH,
        to_system_utc=lambda _close: None,
    )
    windows = fold_window(
        "totals",
        orders,
        event_time,
        TumblingWindower(length=WINDOW, align_to=EPOCH),
        builder=lambda: (0, 0),
        folder=add,
        merger=merge,
        ordered=False,
    )
    op.inspect("late", windows.late, lambda _step, _item: late.append(1))
    op.output("results", op.map("row", windows.down, row), sink)
    return flow


def main() -> None:
    args = window_arguments(__doc__)

    clock = Clock()
    sink = ListSink(clock, args.expected)
    late: list[int] = []
    source = KafkaSource([args.bootstrap], [args.topic], tail=False)
    cli_main(build_flow(source, clock, sink, late), workers_per_process=1)
    clock.finish()  # no-op when the last expected result arrived (fewer: the run's end)
    clock.report(windows=len(sink.rows), late_events=len(late))
    write_results(args.results_out, sink.rows)


if __name__ == "__main__":
    main()
