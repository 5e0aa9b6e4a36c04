"""A live subscriber: the WebSocket live tail (/ws/events/{stream}) of a stream, recording for
each event its event time (the open-loop producer's due send time) and the seconds from then to
its arrival here. Prints `ready` once connected, then one JSON line when --seconds are over.

    python -m benchmarks.runners.live_tail --url http://HOST:PORT --stream-id S --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime

import aiohttp
import orjson

from benchmarks.procstat import self_usage
from benchmarks.runners.common import api_auth


def event_time_s(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def tail(args: argparse.Namespace) -> dict[str, object]:
    ws_url = args.url.replace("http://", "ws://") + f"/ws/events/{args.stream_id}"
    arrivals: list[tuple[float, bytes]] = []
    closed: str | None = None
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            ws_url, params={"start": "latest"}, headers=api_auth(), max_msg_size=0
        ) as ws,
    ):
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        cpu0, _ = self_usage()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            try:
                message = await ws.receive(timeout=max(0.01, end - time.monotonic()))
            except TimeoutError:
                break
            if message.type == aiohttp.WSMsgType.TEXT:
                arrivals.append((time.time(), message.data.encode()))
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                closed = f"closed by the server: {ws.close_code} {message.extra or ''}"
                break
        cpu, peak = self_usage()
    samples = []
    for received, data in arrivals:
        sent = event_time_s(orjson.loads(data)["event"]["time"])
        samples.append((sent, received - sent))
    return {
        "events": len(samples),
        "samples": samples,
        "closed": closed,
        "cpu_s": cpu - cpu0,
        "peak_rss_bytes": peak,
        "seconds": args.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--stream-id", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    result = asyncio.run(tail(parser.parse_args()))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
