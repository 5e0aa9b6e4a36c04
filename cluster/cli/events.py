"""`esb events rebuild-index | indexer-status`: the event store's indexes (cluster.stores.
event_index) dropped and re-read from the topics, and what the indexer actor reports."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from actors.indexer import IndexerLauncher
from cluster.services.bus import Bus
from cluster.services.event_store import EventStoreService
from cluster.settings import Settings


def register(subparsers: Any) -> None:
    events = subparsers.add_parser("events", help="the event store's indexes").add_subparsers(
        dest="events_command", required=True
    )
    rebuild = events.add_parser(
        "rebuild-index", help="drop the indexes and re-read every stream (no appends meanwhile)"
    )
    rebuild.add_argument("--no-wait", action="store_true", help="do not wait for the re-read")
    events.add_parser("indexer-status", help="what the indexer actor reports")


def execute(args: argparse.Namespace, settings: Settings) -> int:
    launcher = IndexerLauncher(settings)
    if args.events_command == "indexer-status":
        print(launcher.status() or "the indexer is not running (esb up starts it)")
        return 0
    return asyncio.run(_rebuild(settings, launcher, wait=not args.no_wait))


async def _rebuild(settings: Settings, launcher: IndexerLauncher, *, wait: bool) -> int:
    bus = Bus(settings)
    try:
        generation = await EventStoreService(bus=bus, indexers=launcher).rebuild_indexes(wait=wait)
    finally:
        await bus.close()
    print(f"indexes dropped; the indexer re-reads every stream (generation {generation})")
    return 0
