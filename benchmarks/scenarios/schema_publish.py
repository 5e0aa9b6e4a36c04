"""Scenario schema-publish: what validation on publish costs on the batch path. The same batch
load (1,000 events per request, 8 concurrent clients) into two streams side by side in each
trial: one plain, one binding the events' type to a JSON Schema (so every payload is checked
by its compiled validator before anything is produced). Target: at most 15% slower.
"""

from __future__ import annotations

import uuid

from benchmarks.measure import Runs, Target, ratio
from benchmarks.pipeline_run import create_stream
from benchmarks.scenario import Context, ScenarioResult
from benchmarks.scenarios.http_publish import _http_trial, batch_load_args, serve_pids

ORDER_SCHEMA = {  # what benchmarks.runners.http_load's events carry
    "type": "object",
    "properties": {"amount": {"type": "integer", "minimum": 0, "maximum": 1000}},
    "required": ["amount"],
    "additionalProperties": False,
}
FORMATS = {"json": "JSON", "arrow": "Arrow IPC"}


def run(ctx: Context) -> ScenarioResult:
    config = ctx.config
    result = ScenarioResult("schema-publish", "Batch publish with and without schema validation")
    suffix = uuid.uuid4().hex[:8]
    registered = ctx.http.post(
        "/api/v1/schemas",
        json={
            "schema_name": f"bench-order-{suffix}",
            "event_type": "order.placed",
            "schema_type": "json",
            "schema": ORDER_SCHEMA,
        },
    )
    registered.raise_for_status()
    schema_id = int(registered.json()["schema_id"])
    streams = {
        "plain": create_stream(ctx.http, f"plain-{suffix}", config.partitions)[0],
        "schema": create_stream(
            ctx.http,
            f"checked-{suffix}",
            config.partitions,
            schemas={"order.placed": schema_id},
        )[0],
    }
    runs = {
        (kind, mode): Runs(
            f"HTTP batch ({label}), {'validated' if mode == 'schema' else 'no schema'}",
            f"POST /api/v1/events/batch, {label} body, {config.batch_size} events/request, "
            f"{config.clients} clients"
            + (", order.placed bound to a JSON Schema" if mode == "schema" else ""),
        )
        for kind, label in FORMATS.items()
        for mode in streams
    }
    result.systems = list(runs.values())
    pids = serve_pids(ctx)
    for trial in range(1, config.trials + 1):
        label = f"trial {trial}/{config.trials}"
        for (kind, mode), batch in runs.items():
            ctx.progress(f"{batch.name}, {label} ...")
            args = batch_load_args(ctx, streams[mode], kind)
            _http_trial(ctx, batch, label, args, pids)
    ratios = {
        kind: ratio(runs[(kind, "schema")].median_rate(), runs[(kind, "plain")].median_rate())
        for kind in FORMATS
    }
    result.ratios = {f"validated / no schema ({FORMATS[k]})": r for k, r in ratios.items()}
    result.targets = [
        Target(
            f"batch publish with a schema / without ({FORMATS[kind]})",
            ">= 0.85x (at most 15% slower)",
            value,
            0.85,
            unit="x",
        )
        for kind, value in ratios.items()
    ]
    result.extra = {"schema_id": schema_id, "streams": streams}
    return result
