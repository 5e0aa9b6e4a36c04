"""Bare consume + bulk CloudEvents decode + Polars group-by, in one process without Ray or Redis:
what the pipeline's hot path costs on its own.

Each batch is decoded in one call (pipelines.decode.decode_cloudevents) and reduced to partial
(key, window) counts and sums; partials are folded every FOLD_EVERY batches and at the end.

    python -m benchmarks.runners.bulk_polars --bootstrap HOST:PORT --topic TOPIC --results-out F
"""

from __future__ import annotations

import polars as pl

from benchmarks.datagen import WINDOW_MS, normalise
from benchmarks.runners.common import Clock, arguments, batches, open_consumer
from pipelines.decode import decode_cloudevents

FOLD_EVERY = 16
_KEYS = ["key", "window_start_ms"]


def _fold(partials: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(partials).group_by(_KEYS).agg(pl.col("orders").sum(), pl.col("revenue").sum())


def main() -> None:
    args = arguments(__doc__ or "")
    consumer, total = open_consumer(args.bootstrap, args.topic)
    clock = Clock()
    events = 0
    partials: list[pl.DataFrame] = []
    for batch in batches(consumer, total):
        clock.first()
        frame = decode_cloudevents([m.value() or b"" for m in batch], {"amount": "int"})
        partials.append(
            frame.group_by(
                pl.col("aggregate_id").alias("key"),
                (pl.col("event_time_ms") // WINDOW_MS * WINDOW_MS).alias("window_start_ms"),
            ).agg(pl.len().alias("orders"), pl.col("amount").sum().alias("revenue"))
        )
        if len(partials) >= FOLD_EVERY:
            partials = [_fold(partials)]
        events += len(batch)
    results = normalise(_fold(partials))
    clock.report(events, windows=results.height)
    consumer.close()
    if args.results_out:
        results.write_ndjson(args.results_out)


if __name__ == "__main__":
    main()
