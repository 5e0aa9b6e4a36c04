"""The benchmark suite: `python -m benchmarks` (full) or `python -m benchmarks --quick`.

Starts a private stack (own ports, own temp dir), runs the scenarios with progress on stderr,
prints the tables, writes benchmarks/results/<timestamp>.json, PNG charts and the README
section (README-section.md for full runs), and stops everything it started. Missed targets are
reported, not failed; the exit code is 1 only when a trial failed or results were wrong.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks import charts, report
from benchmarks.config import FULL, QUICK
from benchmarks.machine import machine, versions
from benchmarks.peers import bytewax_python, quix_python
from benchmarks.progress import Progress
from benchmarks.scenario import Context, ScenarioResult
from benchmarks.scenarios import (
    arrow_ingest,
    correlation,
    end_to_end,
    event_store,
    http_publish,
    live_http,
    profile,
    ray_nodes,
    scaling,
    schema_publish,
    window_throughput,
)
from benchmarks.stack import private_stack
from cluster.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = (
    "window-throughput",
    "arrow-ingest",
    "http-publish",
    "live-http",
    "end-to-end",
    "scaling",
    "ray-nodes",
    "event-store",
    "schema-publish",
    "correlation",
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about ten minutes")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios (default: all of {', '.join(SCENARIOS)})",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--keep-stack",
        type=Path,
        default=None,
        help="reuse and leave running a stack in this dir (developing the suite)",
    )
    return parser.parse_args(argv)


def run_scenarios(ctx: Context, only: set[str]) -> tuple[list[ScenarioResult], dict[str, Any]]:
    results: list[ScenarioResult] = []
    profiled: dict[str, Any] = {}
    loaded = None
    if only & {"window-throughput", "scaling", "ray-nodes"}:
        loaded = window_throughput.load_topic(ctx)
    window = None
    if "window-throughput" in only and loaded is not None:
        window = window_throughput.run(ctx, loaded)
        results.append(window)
    if "arrow-ingest" in only:
        results.append(arrow_ingest.run(ctx))
    if "http-publish" in only:
        results.append(http_publish.run(ctx))
    if "live-http" in only:
        results.append(live_http.run(ctx))
    if "end-to-end" in only:
        results.append(end_to_end.run(ctx))
    if "scaling" in only and loaded is not None:
        results.append(scaling.run(ctx, loaded, window or ScenarioResult("none", "")))
    if "ray-nodes" in only and ctx.config.ray_nodes:
        results.append(ray_nodes.run(ctx, loaded))
    elif "ray-nodes" in only:
        skipped = ScenarioResult("ray-nodes", ray_nodes.TITLE)
        skipped.status = "left out of quick runs"
        skipped.notes.append("it takes a few minutes; `make bench` runs it")
        results.append(skipped)
    if "event-store" in only:
        results.append(event_store.run(ctx))
    if "schema-publish" in only:
        results.append(schema_publish.run(ctx))
    if "correlation" in only:
        results.append(correlation.run(ctx))
    missed = any(t.status == "missed" for r in results for t in r.targets)
    if missed and loaded is not None:
        try:
            profiled = profile.run(ctx, loaded)
        except Exception as exc:
            ctx.progress(f"profile FAILED: {exc}")
    return results, profiled


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the stack


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse(argv)
    config = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    progress = Progress()
    started_at = datetime.now(tz=UTC)
    began = time.monotonic()
    progress(f"benchmark run '{config.name}': {', '.join(s for s in SCENARIOS if s in only)}")
    peers = {"window-throughput", "correlation"}
    quix = quix_python(Settings().esb_cache_dir, progress) if only & peers else None
    wanted = "window-throughput" in only
    bytewax = bytewax_python(Settings().esb_cache_dir, progress) if wanted else None
    work_dir = Path(tempfile.mkdtemp(prefix="esb-bench-work-"))
    try:
        with (
            private_stack(progress, keep_dir=args.keep_stack) as bench,
            httpx.Client(
                base_url=bench.settings.api_url, timeout=120, headers=bench.auth_header()
            ) as http,
        ):
            ctx = Context(bench, http, config, progress, work_dir, quix, bytewax)
            results, profiled = run_scenarios(ctx, only)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    doc = document(
        config.name, started_at, time.monotonic() - began, results, profiled, quix, bytewax
    )
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{stamp}.json"
    json_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    pngs = charts.draw(results, args.out, stamp)
    section = report.full_markdown(doc)
    section_path = args.out / (
        "README-section.md" if config.name == "full" else "README-section-quick.md"
    )
    section_path.write_text(section)
    print(section)
    progress(
        f"wrote {json_path}, {section_path} and {len(pngs)} charts "
        f"({', '.join(p.name for p in pngs)}) in {time.monotonic() - began:.0f}s"
    )
    failed = [f for r in results for s in r.systems for f in s.failures]
    return 1 if failed else 0


def document(
    name: str,
    started_at: datetime,
    seconds: float,
    results: list[ScenarioResult],
    profiled: dict[str, Any],
    quix: Path | None,
    bytewax: Path | None = None,
) -> dict[str, Any]:
    config = QUICK if name == "quick" else FULL
    not_measured = [f"{r.key}: {' '.join(r.notes)}" for r in results if r.status != "measured"]
    not_measured += [
        n for r in results for n in r.notes if "not measurable yet" in n and r.status == "measured"
    ]
    return {
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": seconds,
        "reproduce": "make bench" if name == "full" else "make bench-quick",
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "machine": machine(),
        "versions": versions(quix, bytewax),
        "scenarios": [r.to_dict() for r in results],
        "targets": [t.to_dict() for r in results for t in r.targets],
        "profile": profiled or None,
        "not_measured": not_measured,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
