"""HTTP load for the publish endpoints, from its own process (its CPU is the client's, not ours).

batch:  N events as requests of --batch events (--format json, ndjson or arrow), --clients
        concurrent closed-loop clients, each waiting for its answer before sending the next;
        events/s from first send to last answer.
single: one event per request, open loop at --rate requests/s for --seconds: request i is due at
        t0 + i/rate and is sent then whether or not earlier ones were answered; its latency is
        answer time - due time, so a stalled server or client cannot hide queueing.
closed: one event per request, --clients closed-loop clients for --seconds: the sustained rate.

    python -m benchmarks.runners.http_load batch --url URL --stream-id S --events 50000
    python -m benchmarks.runners.http_load single --url URL --stream-id S --rate 100 --seconds 5
    python -m benchmarks.runners.http_load closed --url URL --stream-id S --clients 32 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from typing import Any

import aiohttp
import orjson
import pyarrow as pa

from benchmarks.datagen import TENANT
from benchmarks.procstat import self_usage
from benchmarks.runners.common import api_auth

WHO = {"tenant_id": TENANT, "user_id": "loader"}


def event(i: int) -> dict[str, Any]:
    return {
        "event_type": "order.placed",
        "source_capability": "shop",
        "aggregate_id": f"k{i % 1000:04d}",
        "aggregate_type": "Order",
        "payload": {"amount": i % 100},
    }


CONTENT_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "arrow": "application/vnd.apache.arrow.stream",
}


def batch_body(events: list[dict[str, Any]], stream_id: str, kind: str) -> bytes:
    """One batch request's body: a JSON object, NDJSON lines, or an Arrow IPC stream (the
    stream and user then go in the query string)."""
    if kind == "json":
        return orjson.dumps({"stream_id": stream_id, **WHO, "events": events})
    if kind == "ndjson":
        return b"\n".join(orjson.dumps(e) for e in events)
    rows = [{**e, "payload": orjson.dumps(e["payload"]).decode()} for e in events]
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, pa.Table.from_pylist(rows).schema) as writer:
        writer.write_table(pa.Table.from_pylist(rows))
    return sink.getvalue()


async def batch_load(args: argparse.Namespace) -> dict[str, Any]:
    requests = args.events // args.batch
    bodies = [
        batch_body(
            [event(r * args.batch + i) for i in range(args.batch)], args.stream_id, args.format
        )
        for r in range(requests)
    ]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    failures: list[str] = []
    published = [0]
    headers = {"content-type": CONTENT_TYPES[args.format], **api_auth()}
    query = "" if args.format == "json" else f"?stream_id={args.stream_id}&user_id=loader"

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(
                f"{args.url}/api/v1/events/batch{query}", data=body, headers=headers
            ) as answer:
                doc = await answer.json(loads=orjson.loads)
                if answer.status != 200:
                    failures.append(f"HTTP {answer.status}: {str(doc)[:200]}")
                else:
                    published[0] += int(doc["published"])

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        cpu0, _ = self_usage()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(args.clients)))
        seconds = time.perf_counter() - t0
    return report(published[0], seconds, cpu0, failures, requests=requests)


def report(
    events: int, seconds: float, cpu0: float, failures: list[str], **extra: Any
) -> dict[str, Any]:
    """The JSON line every mode prints: what got through, in how long, at what CPU cost."""
    cpu, peak = self_usage()
    return {
        "events": events,
        "seconds": seconds,
        "cpu_s": cpu - cpu0,
        "peak_rss_bytes": peak,
        "failures": failures[:5],
        "failed_requests": len(failures),
        **extra,
    }


async def post_event(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    failures: list[str],
) -> None:
    """One single-event publish; anything but 201 is noted in `failures`."""
    try:
        async with session.post(f"{url}/api/v1/events", data=body, headers=headers) as answer:
            await answer.read()
            if answer.status != 201:
                failures.append(f"HTTP {answer.status}")
    except aiohttp.ClientError as exc:
        failures.append(type(exc).__name__)


async def single_load(args: argparse.Namespace) -> dict[str, Any]:
    total = int(args.rate * args.seconds)
    t0 = time.perf_counter() + 0.2
    wall0 = time.time() + 0.2
    # --stamp: each event's event_time is its due send time, for a live subscriber to measure
    stamps = [
        {"event_time": int((wall0 + i / args.rate) * 1000)} if args.stamp else {}
        for i in range(total)
    ]
    bodies = [
        orjson.dumps({"stream_id": args.stream_id, **WHO, **event(i), **stamps[i]})
        for i in range(total)
    ]
    latencies: list[float] = []
    failures: list[str] = []
    headers = {"content-type": "application/json", **api_auth()}
    connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue behind a pool limit

    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes, due: float) -> None:
            await post_event(session, args.url, body, headers, failures)
            latencies.append(time.perf_counter() - due)

        cpu0, _ = self_usage()
        tasks = []
        for i, body in enumerate(bodies):
            due = t0 + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body, due)))
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - t0
    return report(total, seconds, cpu0, failures, latencies_s=latencies)


async def closed_load(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"content-type": "application/json", **api_auth()}
    latencies: list[float] = []
    failures: list[str] = []
    sent = [0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(end: float) -> None:
            while time.perf_counter() < end:
                sent[0] += 1
                body = orjson.dumps({"stream_id": args.stream_id, **WHO, **event(sent[0])})
                start = time.perf_counter()
                await post_event(session, args.url, body, headers, failures)
                latencies.append(time.perf_counter() - start)

        cpu0, _ = self_usage()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(t0 + args.seconds) for _ in range(args.clients)))
        seconds = time.perf_counter() - t0
    return report(len(latencies) - len(failures), seconds, cpu0, failures, latencies_s=latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["batch", "single", "closed"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--stream-id", required=True)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--format", choices=sorted(CONTENT_TYPES), default="json")
    parser.add_argument("--stamp", action="store_true", help="event_time = due send time")
    args = parser.parse_args()
    load = {"batch": batch_load, "single": single_load, "closed": closed_load}[args.mode]
    sys.stdout.write(orjson.dumps(asyncio.run(load(args))).decode() + "\n")


if __name__ == "__main__":
    main()
