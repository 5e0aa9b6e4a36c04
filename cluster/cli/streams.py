"""`esb streams apply FILE | list`: streams from a YAML file, and what exists."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cluster.errors import InvalidInput
from cluster.models.streams import StreamConfig
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings


def register(subparsers: Any) -> None:
    streams = subparsers.add_parser("streams", help="manage streams").add_subparsers(
        dest="streams_command", required=True
    )
    apply = streams.add_parser("apply", help="create or update streams from a YAML file")
    apply.add_argument("file", type=Path)
    apply.add_argument("--tenant", help="tenant id (else `tenant_id:` in the file)")
    apply.add_argument("--created-by", default="esb-cli")
    listing = streams.add_parser("list", help="list streams")
    listing.add_argument("--tenant", help="only this tenant's streams (default: every tenant's)")


def execute(args: argparse.Namespace, settings: Settings) -> int:
    if args.streams_command == "apply":
        return asyncio.run(apply_streams(settings, args.file, args.tenant, args.created_by))
    return asyncio.run(list_streams(settings, args.tenant))


def load_streams_file(path: Path) -> tuple[str | None, list[StreamConfig]]:
    """streams.yaml: `streams:` (a list of StreamConfig fields) and an optional `tenant_id:`."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    entries = doc.get("streams") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise InvalidInput(f"{path}: expected a `streams:` list of stream definitions")
    configs = []
    for number, entry in enumerate(entries, start=1):
        try:
            configs.append(StreamConfig.model_validate(entry))
        except ValidationError as exc:
            raise InvalidInput(f"{path}: stream #{number}: {exc}") from None
    return (doc.get("tenant_id") if isinstance(doc, dict) else None), configs


async def apply_streams(settings: Settings, path: Path, tenant: str | None, user: str) -> int:
    file_tenant, configs = load_streams_file(path)
    tenant_id = tenant or file_tenant
    if not tenant_id:
        raise InvalidInput("say which tenant: --tenant T, or `tenant_id:` in the file")
    service = EventStreamingService(settings)
    for config in configs:
        result = await service.apply_stream(config, tenant_id, user)
        print(
            f"{config.stream_name}: {result.action} ({result.kafka_topic}, id {result.stream_id})"
        )
        for line in result.changes:
            print(f"  changed {line}")
        for line in result.warnings:
            print(f"  warning: {line}")
    return 0


async def list_streams(settings: Settings, tenant: str | None) -> int:
    for record in await EventStreamingService(settings).list_streams(tenant):
        print(f"{record.tenant_id}/{record.stream_name}\t{record.stream_id}\t{record.kafka_topic}")
    return 0
