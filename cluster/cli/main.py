"""The `esb` command line: the local stack, streams, pipelines, encryption keys, and the demo
behind `make run`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cluster.cli.keys import add_keys_parser, keys_command
from cluster.cli.tokens import add_tokens_parser, tokens_command
from cluster.errors import EsbError, InvalidInput
from cluster.models.streams import StreamConfig
from cluster.services.processing import StreamProcessingService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings, get_settings
from cluster.stack import local_stack
from cluster.stack.demo import run_demo
from cluster.stack.secrets import with_local_secrets
from pipelines.spec import PipelineSpec


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


async def pipelines_command(settings: Settings, args: argparse.Namespace) -> int:
    service = StreamProcessingService(settings)
    if args.pipelines_command == "submit":
        try:
            text = args.file.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {args.file}: {exc}") from None
        record = await service.submit_pipeline(
            PipelineSpec.from_yaml(text), args.tenant, args.created_by, args.owners
        )
        print(f"submitted pipeline {record.pipeline_id} (Ray job {record.job_id})")
        print(f"  esb pipelines status {record.pipeline_id}")
    elif args.pipelines_command == "list":
        for record in await service.list_pipelines(args.tenant):
            state = "stopped" if record.stopped else "submitted"
            print(f"{record.pipeline_id}\t{record.tenant_id}/{record.spec.pipeline_name}\t{state}")
    elif args.pipelines_command == "status":
        print(yaml.safe_dump(await service.status(args.pipeline_id), sort_keys=False))
    else:
        await service.stop_pipeline(args.pipeline_id)
        print(f"stopped pipeline {args.pipeline_id}")
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esb", description="Event Streaming Bus")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start Kafka, Redis, a Ray head and the API (or use external ones)")
    sub.add_parser("down", help="stop what `esb up` started")
    sub.add_parser("status", help="show what runs")
    sub.add_parser("run", help="up + demo stream and events; Ctrl-C stops")
    streams = sub.add_parser("streams", help="manage streams").add_subparsers(
        dest="streams_command", required=True
    )
    apply = streams.add_parser("apply", help="create or update streams from a YAML file")
    apply.add_argument("file", type=Path)
    apply.add_argument("--tenant", help="tenant id (else `tenant_id:` in the file)")
    apply.add_argument("--created-by", default="esb-cli")
    listing = streams.add_parser("list", help="list streams")
    listing.add_argument("--tenant")

    pipelines = sub.add_parser("pipelines", help="pipeline jobs on Ray").add_subparsers(
        dest="pipelines_command", required=True
    )
    submit = pipelines.add_parser("submit", help="submit a pipeline spec (YAML) as a Ray job")
    submit.add_argument("file", type=Path)
    submit.add_argument("--tenant", required=True)
    submit.add_argument("--created-by", default="esb-cli")
    submit.add_argument("--owners", type=int, default=2, help="partition-owner actors")
    pipelines.add_parser("list", help="list pipelines").add_argument("--tenant")
    for name, text in (("status", "state and progress"), ("stop", "stop the job")):
        pipelines.add_parser(name, help=text).add_argument("pipeline_id")
    add_keys_parser(sub)
    add_tokens_parser(sub)
    return parser


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        print_urls(local_stack.up(settings))
        return 0
    if args.command == "down":
        local_stack.down(settings)
        return 0
    if args.command == "status":
        for name, state in local_stack.status(settings).items():
            print(f"{name:10} {_describe(state)}")
        return 0
    if args.command == "run":
        return run(settings)
    if args.command == "pipelines":
        return asyncio.run(pipelines_command(settings, args))
    if args.command == "keys":
        return keys_command(args, settings)
    if args.command == "tokens":  # signed with the secret the local stack's API checks
        return tokens_command(args, with_local_secrets(settings))
    if args.streams_command == "apply":
        return asyncio.run(apply_streams(settings, args.file, args.tenant, args.created_by))
    return asyncio.run(list_streams(settings, args.tenant))


def _describe(state: Any) -> str:
    if isinstance(state, dict):
        return "  ".join(f"{k}={v}" for k, v in state.items())
    return str(state)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.getLogger("ray").setLevel(logging.ERROR)  # job upload chatter is not for the user
    try:
        return dispatch(args, get_settings())
    except EsbError as exc:
        print(f"esb: error: {exc.detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
