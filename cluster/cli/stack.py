"""`esb up | down | status | run`: the local stack (Kafka, Redis, a Ray head, the API), and the
demo behind `make run`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from typing import Any

from cluster.settings import Settings
from cluster.stack import local_stack
from cluster.stack.demo import run_demo


def register(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up", help="start Kafka, Redis, a Ray head and the API (or use external ones)"
    )
    up.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        metavar="N",
        help="also start N Ray worker nodes (1 CPU each) on this machine joining the local head "
        "(default: RAY_WORKERS, else 0)",
    )
    up.add_argument(
        "--kafka-brokers",
        type=_broker_count,
        default=None,
        metavar="N",
        help="run the local Kafka as a KRaft cluster of N brokers on this machine; with 3 its "
        "topics get 3 replicas, min.insync.replicas=2 (default: KAFKA_BROKERS, else 1)",
    )
    subparsers.add_parser("down", help="stop what `esb up` started")
    subparsers.add_parser("status", help="show what runs")
    subparsers.add_parser("run", help="up + demo stream and events; Ctrl-C stops")


def execute(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        if args.ray_workers is not None:
            settings = settings.model_copy(update={"ray_workers": args.ray_workers})
        if args.kafka_brokers is not None:
            settings = settings.model_copy(update={"kafka_brokers": args.kafka_brokers})
        print_urls(local_stack.up(settings))
    elif args.command == "down":
        local_stack.down(settings)
    elif args.command == "status":
        for name, state in local_stack.status(settings).items():
            print(f"{name:10} {_describe(state)}")
    else:
        return run(settings)
    return 0


def print_urls(settings: Settings) -> None:
    url = settings.api_url
    kafka = f"{settings.kafka_bootstrap} ({settings.kafka_security_protocol})"
    if settings.kafka_ssl_port is not None and settings.kafka_ssl_ca_location is not None:
        kafka += f", TLS on port {settings.kafka_ssl_port}, CA {settings.kafka_ssl_ca_location}"
    print(f"""
[esb] the bus is up:
  API docs      {url}/docs
  status        {url}/api/v1/status
  token         TOKEN=$(.venv/bin/esb tokens create --tenant demo --role admin)
  streams       curl -H "Authorization: Bearer $TOKEN" {url}/api/v1/streams
  Ray dashboard http://127.0.0.1:{settings.ray_dashboard_port}
  Kafka         {kafka}
  Redis         {settings.redis}
""")


def run(settings: Settings) -> int:
    """`make run`: the stack, a demo stream with a few events, then wait for Ctrl-C."""

    already = local_stack.running_services(settings)
    resolved = local_stack.up(settings)
    try:
        asyncio.run(run_demo(resolved))
        print_urls(resolved)
        print("[esb] press Ctrl-C to stop")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if already:
            print(f"[esb] leaving running what was already up: {', '.join(already)}")
        else:
            local_stack.down(settings)
    return 0


def _describe(state: Any) -> str:
    if isinstance(state, dict):
        return "  ".join(f"{k}={v}" for k, v in state.items())
    return str(state)


def _broker_count(text: str) -> int:
    """--kafka-brokers: 1 to 9 (a KRaft quorum of that many voters)."""
    count = int(text)
    if not 1 <= count <= 9:
        raise argparse.ArgumentTypeError(f"{count} brokers: choose 1 to 9 (3 for RF3 topics)")
    return count
