"""Sizes of a run: `full` (what the README reports) and `quick` (under five minutes on 2 cores,
stack start included). Both run every scenario with 3 trials."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    name: str
    window_events: int  # scenario 1 and 5: events pre-loaded (1,000 keys, ~250 bytes)
    publish_events: int  # scenario 3: events through the batch endpoint per trial
    raw_publish_events: int  # scenario 3: events through the raw producer per trial
    single_rate: float  # scenario 3: single-event requests per second (open loop)
    single_seconds: float  # and how long the open and the closed loop (sustained) run
    e2e_rate: float  # scenario 4: events per second (open loop)
    e2e_seconds: float
    e2e_warmup_s: float = 1.0
    trials: int = 3
    partitions: int = 4
    batch_size: int = 1_000
    clients: int = 8
    single_clients: int = 64  # scenario 3: closed-loop clients of the sustained single publish
    live_rates: tuple[float, ...] = (200.0, 1_000.0)  # live-http: HTTP publishes per second
    live_seconds: float = 5.0
    scaling_owners: tuple[int, ...] = (1, 2, 4)
    ray_nodes: bool = True  # scaling over 1-3 Ray nodes (quick runs leave it out for time)
    pipeline_owners: int = 2  # scenario 1 (the API's default)
    event_store_events: int = 100_000  # event-store: events indexed, then looked up
    correlation_events: int = 100_000  # correlation: events per workload (join, pattern)


FULL = Config(
    name="full",
    window_events=2_000_000,
    publish_events=200_000,
    raw_publish_events=1_000_000,
    single_rate=500.0,
    single_seconds=10.0,
    e2e_rate=5_000.0,
    e2e_seconds=30.0,
    event_store_events=1_000_000,
    correlation_events=500_000,
)
QUICK = Config(
    name="quick",
    window_events=200_000,
    publish_events=30_000,
    raw_publish_events=200_000,
    single_rate=500.0,
    single_seconds=3.0,
    e2e_rate=5_000.0,
    e2e_seconds=5.0,
    ray_nodes=False,
)
