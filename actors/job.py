"""The pipeline job's entrypoint (run by the Ray Jobs API): start and supervise partition owners.

    python -m actors.job <pipeline_id>

The N partitions are dealt over M owner actors. When an owner dies (ray.kill, a crashed process,
a lost node), a new one takes its partitions over: it claims new epochs, which fences the old one
should it still be alive, and resumes from the last checkpoint. This lives in actors/ rather than
pipelines/ because it drives Ray; pipelines/ stays pure.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError
from redis import Redis

from actors.partition_owner import PartitionOwnerActor
from cluster import naming, ray_client
from cluster.models.pipelines import PipelineRecord, spread
from cluster.settings import Settings, get_settings

log = logging.getLogger("esb.pipeline")
RESTART_BACKOFF_S = 1.0


def load_record(settings: Settings, pipeline_id: str) -> PipelineRecord:
    raw = Redis.from_url(settings.redis).get(naming.pipeline_key(pipeline_id))
    if raw is None:
        raise SystemExit(f"pipeline {pipeline_id} is not registered")
    return PipelineRecord.model_validate_json(raw)


def start_owner(settings: Settings, record: PipelineRecord, index: int, parts: list[int]) -> Any:
    return PartitionOwnerActor.options(  # type: ignore[attr-defined]
        name=naming.owner_name(record.pipeline_id, index),
        namespace=naming.RAY_NAMESPACE,
        lifetime="non_detached",
        scheduling_strategy="SPREAD",  # owners over the cluster's nodes, not packed on one
        runtime_env={"env_vars": {"POLARS_MAX_THREADS": "1"}},
    ).remote(record.model_dump(mode="json"), parts)  # Settings: from the job's environment


def supervise(settings: Settings, record: PipelineRecord) -> None:
    groups = spread(record.partitions, record.owners)
    redis = Redis.from_url(settings.redis)
    running: dict[Any, int] = {}
    for index, parts in enumerate(groups):
        running[start_owner(settings, record, index, parts).run.remote()] = index
    log.info(
        "pipeline %s: %d owners over %d partitions",
        record.pipeline_id,
        len(groups),
        record.partitions,
    )
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        index = running.pop(ready[0])
        try:
            outcome = ray.get(ready[0])
        except (RayActorError, RayTaskError) as exc:
            outcome = f"died: {type(exc).__name__}"
        log.warning("owner %d of pipeline %s ended (%s)", index, record.pipeline_id, outcome)
        if outcome == "fenced":  # another job instance owns these partitions now
            continue
        redis.hincrby(naming.pipeline_key(record.pipeline_id, "job"), "owner_restarts", 1)
        time.sleep(RESTART_BACKOFF_S)
        _wait_name_free(naming.owner_name(record.pipeline_id, index))
        running[start_owner(settings, record, index, groups[index]).run.remote()] = index


def _wait_name_free(name: str, deadline_s: float = 30.0) -> None:
    """A killed actor's name is released asynchronously; reuse it once it is gone."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            ray.get_actor(name, namespace=naming.RAY_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.2)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    record = load_record(settings, argv[0])
    ray_client.connect(settings, log_to_driver=True)
    supervise(settings, record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
