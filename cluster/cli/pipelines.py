"""`esb pipelines submit | list | status | stop`: pipeline jobs on Ray."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import yaml

from cluster.errors import InvalidInput
from cluster.services.processing import StreamProcessingService
from cluster.settings import Settings
from pipelines.spec import PipelineSpec


def register(subparsers: Any) -> None:
    pipelines = subparsers.add_parser("pipelines", help="pipeline jobs on Ray").add_subparsers(
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


def execute(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_pipelines(settings, args))


async def _pipelines(settings: Settings, args: argparse.Namespace) -> int:
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
            state = await service.state(record)
            print(f"{record.pipeline_id}\t{record.tenant_id}/{record.spec.pipeline_name}\t{state}")
    elif args.pipelines_command == "status":
        print(yaml.safe_dump(await service.status(args.pipeline_id), sort_keys=False))
    else:
        await service.stop_pipeline(args.pipeline_id)
        print(f"stopped pipeline {args.pipeline_id}")
    return 0
