"""The Bytewax peer's dataflow (benchmarks/runners/bytewax_window.py) against the window oracle,
without Kafka: its flow over a Bytewax TestingSource of the benchmark's own records, in the
Bytewax venv (benchmarks/peers.py; skipped until a benchmark run has made it). Records come in
time order and also partition after partition (one key's records stay in order, as Kafka keeps
them), so the per-key event-time watermark is what closes the windows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import polars as pl
import pytest

from benchmarks.datagen import (
    Workload,
    encode_values,
    make_workload,
    normalise,
    sentinel_events,
)
from benchmarks.peers import BYTEWAX_REQUIREMENTS, ready_python
from cluster.settings import Settings

RUNNERS = Path(__file__).resolve().parents[2] / "benchmarks" / "runners"
BYTEWAX = ready_python("Bytewax", BYTEWAX_REQUIREMENTS, Settings().esb_cache_dir)
pytestmark = pytest.mark.skipif(BYTEWAX is None, reason="no Bytewax venv yet (a benchmark run)")

DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.run import cli_main
from bytewax.testing import TestingSource
import bytewax_window
from peer_common import Clock

with open(sys.argv[2]) as lines:
    records = [json.loads(line) for line in lines]
msgs = [
    KafkaSourceMessage(key=r["key"].encode(), value=r["value"].encode(), timestamp=(1, r["ts"]))
    for r in records
]
sink, late = bytewax_window.ListSink(Clock(), len(records)), []
flow = bytewax_window.build_flow(TestingSource(msgs, batch_size=1000), Clock(), sink, late)
cli_main(flow, workers_per_process=1)
with open(sys.argv[3], "w") as out:
    out.writelines(json.dumps(row) + "\\n" for row in sink.rows)
print(len(late))
"""


@pytest.mark.parametrize("order", ["time", "partition"])
def test_the_bytewax_flow_equals_the_window_oracle(tmp_path: Path, order: str) -> None:
    base = make_workload(30_000, 4, keys=200, base_ms=1_764_000_000_000)
    # Spread over 12 s of event time (the generator puts 50,000 events in a second).
    stretched = (pl.col("time_ms") - base.base_ms) * 20 + base.base_ms
    workload = Workload(base.events.with_columns(stretched), 4, base.base_ms)
    assert workload.expected().get_column("window_start_ms").n_unique() == 12
    events = pl.concat([workload.events, sentinel_events(4, workload.base_ms)])
    if order == "partition":
        events = events.sort("partition", maintain_order=True)
    rows = zip(
        events.get_column("key"), encode_values(events), events.get_column("time_ms"), strict=True
    )
    records = tmp_path / "records.ndjson"
    records.write_bytes(
        b"".join(
            orjson.dumps({"key": key, "value": value.decode(), "ts": ts}) + b"\n"
            for key, value, ts in rows
        )
    )
    out = tmp_path / "results.ndjson"
    done = subprocess.run(
        [str(BYTEWAX), "-c", DRIVER, str(RUNNERS), str(records), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "0"  # no event was late
    assert normalise(pl.read_ndjson(out)).equals(workload.expected())
