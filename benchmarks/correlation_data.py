"""The correlation scenario's workloads and their oracles.

Join: an orders topic (``order.created``, plus ``order.viewed`` noise the join does not select)
and a payments topic (``payment.authorized`` / ``payment.captured``, plus ``refund.requested``
noise), co-partitioned: both keyed by the order id and placed with
:func:`pipelines.envelope.partition_for`. Per order: no payment (15%), one outside the interval
(10%: before the order, or more than ``JOIN_AFTER_MS`` after it), one inside (50%) or two
inside (25%).

Pattern: login activity of 1,000 users (``login.failed`` 50%, ``login.succeeded`` 20%,
``page.view`` 30%) with an ``ip_risk`` of 0.000..0.999; the pattern is three ``login.failed``
with ``ip_risk > 0.5`` within 60 s, skip past the last event. One later sentinel per partition
(a type nothing selects) moves event time past every event, so every match is released.

Event times advance steadily from a past base, so each partition is in time order and no event
is late; the Kafka record timestamp is the event time (Quix Streams windows and joins by it).
The oracles are brute force over the generated columns: pairs by definition (a sorted search per
key), and every pattern match enumerated by tests/unit/pattern_oracle.py, the oracle the unit
tests hold the operator to.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from benchmarks.datagen import produce_chunks
from cluster.settings import Settings
from pipelines.arrow_batch import partition_of
from pipelines.pattern_spec import PatternSpec
from tests.unit.pattern_oracle import Ev, brute_force, oracle_results

JOIN_AFTER_MS = 60_000
JOIN_LEFT, JOIN_RIGHT = "order.created", "payment."
PATTERN = brute_force("ip_risk")
PATTERN_KEYS = 1_000
PATTERN_STEP_MS = 10  # one event per 10 ms of event time: ~10 s between a user's events
ORDER_STEP_MS = 20
SENTINEL_TYPE = "clock.tick"
JoinPair = tuple[str, str, str]  # key, left event id, right event id
Match = tuple[str, int, int, tuple[str, ...]]  # key, start_ms, end_ms, matched event ids


@dataclass(frozen=True)
class Events:
    """One topic's events: id, type, key, time_ms, partition and the payload columns."""

    frame: pl.DataFrame
    payload: tuple[str, ...]  # payload columns, rendered verbatim as JSON numbers

    @property
    def count(self) -> int:
        return self.frame.height


def past_base(span_ms: int) -> int:
    """An event-time origin so that every event (and a sentinel 10 min later) is in the past:
    Kafka 4 rejects record timestamps more than an hour ahead."""
    return (int(time.time() * 1000) - span_ms - 3_600_000) // 1000 * 1000


def _placed(frame: pl.DataFrame, partitions: int) -> pl.DataFrame:
    return frame.with_columns(
        partition_of(frame.get_column("key"), partitions).cast(pl.Int32).alias("partition")
    )


def join_workload(events: int, partitions: int, seed: int = 11) -> tuple[Events, Events]:
    """About ``events`` events over both topics (orders ~45%, payments the rest)."""
    rng = np.random.default_rng(seed)
    n = max(events * 45 // 100, 1)
    base = past_base(n * ORDER_STEP_MS + JOIN_AFTER_MS * 3)
    order_ms = base + np.arange(n, dtype=np.int64) * ORDER_STEP_MS
    created = rng.random(n) >= 0.1
    orders = pl.DataFrame(
        {
            "id": [f"o{i:09d}" for i in range(n)],
            "type": np.where(created, JOIN_LEFT, "order.viewed"),
            "key": [f"order-{i:09d}" for i in range(n)],
            "time_ms": order_ms,
            "amount": rng.integers(1, 500, n),
        }
    )
    fate = rng.random(n)
    rows: list[tuple[int, str, int]] = []  # order index, type, delay
    for i in (int(x) for x in np.flatnonzero(created)):
        f = fate[i]
        if f < 0.15:
            continue
        if f < 0.20:
            rows.append((i, "payment.captured", -int(rng.integers(1, 5_000))))
        elif f < 0.25:
            rows.append((i, "payment.captured", JOIN_AFTER_MS + int(rng.integers(1, 60_000))))
        else:
            rows.append((i, "payment.authorized", int(rng.integers(0, JOIN_AFTER_MS + 1))))
            if f >= 0.75:
                rows.append((i, "payment.captured", int(rng.integers(0, JOIN_AFTER_MS + 1))))
        if rng.random() < 0.05:
            rows.append((i, "refund.requested", int(rng.integers(0, JOIN_AFTER_MS))))
    index = np.array([r[0] for r in rows], dtype=np.int64)
    payments = pl.DataFrame(
        {
            "id": [f"p{j:09d}" for j in range(len(rows))],
            "type": [r[1] for r in rows],
            "key": [f"order-{i:09d}" for i in index],
            "time_ms": order_ms[index] + np.array([r[2] for r in rows], dtype=np.int64),
            "amount": rng.integers(1, 500, len(rows)),
        }
    ).sort("time_ms", "id")
    return (
        Events(_placed(orders, partitions), ("amount",)),
        Events(_placed(payments, partitions), ("amount",)),
    )


def pattern_workload(events: int, partitions: int, seed: int = 13) -> Events:
    rng = np.random.default_rng(seed)
    base = past_base(events * PATTERN_STEP_MS)
    kinds = np.array(["login.failed", "login.succeeded", "page.view"])
    frame = pl.DataFrame(
        {
            "id": [f"e{i:09d}" for i in range(events)],
            "type": kinds[rng.choice(3, events, p=[0.5, 0.2, 0.3])],
            "key": [f"user-{k:04d}" for k in rng.integers(0, PATTERN_KEYS, events)],
            "time_ms": base + np.arange(events, dtype=np.int64) * PATTERN_STEP_MS,
            "risk": rng.integers(0, 1000, events),
        }
    ).with_columns(("0." + pl.col("risk").cast(pl.String).str.zfill(3)).alias("ip_risk"))
    return Events(_placed(frame.drop("risk"), partitions), ("ip_risk",))


def with_sentinels(events: Events, partitions: int, keys: dict[int, str]) -> Events:
    """One ``clock.tick`` per partition, 10 minutes after the last event."""
    last: int = events.frame.get_column("time_ms").max() or 0  # type: ignore[assignment]
    ticks = pl.DataFrame(
        {
            "id": [f"tick-{p}" for p in keys],
            "type": [SENTINEL_TYPE] * partitions,
            "key": list(keys.values()),
            "time_ms": [last + 600_000] * partitions,
            **{c: ["0"] * partitions for c in events.payload},
            "partition": list(keys),
        }
    )
    frame = events.frame.with_columns(pl.col(c).cast(pl.String) for c in events.payload)
    ticks = ticks.select(
        [pl.col(c).cast(frame.schema[c]) for c in frame.columns if c in ticks.columns]
    )
    return Events(pl.concat([frame, ticks], how="vertical"), events.payload)


def encode(events: Events) -> list[bytes]:
    """CloudEvents 1.0 structured JSON, built column-wise; payload columns go in verbatim."""
    time_text = pl.from_epoch(pl.col("time_ms"), time_unit="ms").dt.strftime(
        "%Y-%m-%dT%H:%M:%S%.3fZ"
    )
    data: list[pl.Expr] = []
    for n, column in enumerate(events.payload):
        data += [pl.lit(("," if n else "") + f'"{column}":'), pl.col(column).cast(pl.String)]
    pieces = [
        pl.lit('{"specversion":"1.0","id":"'),
        pl.col("id"),
        pl.lit('","source":"/bench/correlation","type":"'),
        pl.col("type"),
        pl.lit('","time":"'),
        time_text,
        pl.lit('","subject":"'),
        pl.col("key"),
        pl.lit('","datacontenttype":"application/json","data":{'),
        *data,
        pl.lit('},"tenantid":"bench","aggregateid":"'),
        pl.col("key"),
        pl.lit('","aggregatetype":"Bench"}'),
    ]
    text = events.frame.select(pl.concat_str(pieces).cast(pl.Binary).alias("v"))
    return text.get_column("v").to_list()


def preload(settings: Settings, topic: str, events: Events, chunk: int = 100_000) -> float:
    """Produce every event to its partition with its event time as the record timestamp
    (benchmarks.datagen.produce_chunks); answers the seconds it took, flush included."""
    parts = (events.frame.slice(start, chunk) for start in range(0, events.count, chunk))
    return produce_chunks(settings, topic, ((p, encode(Events(p, events.payload))) for p in parts))


# -- oracles --------------------------------------------------------------------------------


def join_oracle(left: Events, right: Events) -> set[JoinPair]:
    """Every (order.created, payment.*) of one key with ``t <= t_right <= t + JOIN_AFTER_MS``."""
    rights: dict[str, list[tuple[int, str]]] = {}
    chosen = right.frame.filter(pl.col("type").str.starts_with(JOIN_RIGHT))
    for key, t, event_id in chosen.select("key", "time_ms", "id").iter_rows():
        rights.setdefault(key, []).append((t, event_id))
    for found in rights.values():
        found.sort()
    pairs: set[JoinPair] = set()
    lefts = left.frame.filter(pl.col("type") == JOIN_LEFT).select("key", "time_ms", "id")
    for key, t, event_id in lefts.iter_rows():
        found = rights.get(key, [])
        lo = bisect.bisect_left(found, (t, ""))
        hi = bisect.bisect_right(found, (t + JOIN_AFTER_MS, "\U0010ffff"))
        pairs |= {(key, event_id, r) for _, r in found[lo:hi]}
    return pairs


def pattern_oracle(events: Events) -> set[Match]:
    """Every match of PATTERN per key, brute force (tests/unit/pattern_oracle.py)."""
    spec = PatternSpec.model_validate(PATTERN)
    by_key: dict[str, list[Ev]] = {}
    rows = events.frame.select("key", "time_ms", "id", "type", "ip_risk").iter_rows()
    for key, t, event_id, kind, risk in rows:
        extra = (("ip_risk", float(risk)),)
        by_key.setdefault(key, []).append(Ev(key, t, event_id, kind, None, extra))
    found: set[Match] = set()
    for seq in by_key.values():
        seq.sort(key=lambda e: (e.t, e.id))
        for _due, (_name, key, _kind, start, end, ids) in oracle_results(spec, seq):
            found.add((key, start, end, tuple(i for _, group in ids for i in group)))
    return found
