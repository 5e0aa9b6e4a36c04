"""The pipeline job's entrypoint (run by the Ray Jobs API): the coordinator of its partition owners.

    python -m actors.job <pipeline_id>

The N partitions are dealt over M owner actors, and the owners over the Ray nodes (placement).
When a node joins, owners move onto it; when one leaves or an owner dies (ray.kill, a crashed
process), a new owner takes its partitions over: it claims new epochs, which fences the old one
should it still be alive, and resumes from the last checkpoint. This lives in actors/ rather than
pipelines/ because it drives Ray; pipelines/ stays pure.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from redis import Redis, RedisError

from actors.launcher import wait_name_free
from actors.partition_owner import PartitionOwnerActor
from actors.placement import moves, nodes_with_capacity, place
from cluster import naming, ray_client
from cluster.models.pipelines import PipelineRecord, spread
from cluster.settings import Settings, get_settings

log = logging.getLogger("esb.pipeline")
RESTART_BACKOFF_S = 1.0
WATCH_S = 2.0  # how often the coordinator looks for joined or lost nodes
STOP_TIMEOUT_S = 30.0  # a moved owner that has not stopped by then is killed
HEALTH_S = 10.0  # how often the coordinator asks each owner when it last finished a step
# An owner whose step has not ended for this long is replaced: after a broker failure
# librdkafka's send_offsets_to_transaction can block past its own timeout (librdkafka #5456).
STUCK_S = 120.0


def load_record(settings: Settings, pipeline_id: str) -> PipelineRecord:
    raw = Redis.from_url(settings.redis).get(naming.pipeline_key(pipeline_id))
    if raw is None:
        raise SystemExit(f"pipeline {pipeline_id} is not registered")
    return PipelineRecord.model_validate_json(raw)


class Coordinator:
    """One per pipeline job: starts the owners on the nodes `placement.place` picks, moves them
    when nodes join or leave, and replaces those that die.

    A move asks the owner to stop after its current commit, then starts it on its new node; the
    new owner claims new epochs before reading, so even an owner that did not stop in time (and
    was killed) can never commit again. Redis `esb:pl:<id>:placement` holds where each owner
    runs (JSON, rewritten on each change), `esb:pl:<id>:job` counts owner_restarts and
    owner_moves.
    """

    def __init__(self, settings: Settings, record: PipelineRecord) -> None:
        self.record = record
        self.groups = spread(record.partitions, record.owners)
        self.redis = Redis.from_url(settings.redis)
        self.actors: dict[int, Any] = {}  # running owners
        self.runs: dict[Any, int] = {}  # their run() refs
        self.placement: dict[int, str] = {}  # owner -> the node it was started on
        self.target: dict[int, str] = {}
        self.stopping: dict[int, float] = {}  # owner being moved -> when to kill it instead
        self.fenced: set[int] = set()  # another job instance owns these partitions now
        self.addresses: dict[str, str] = {}  # node id -> its address, for the placement doc
        self.progressed: dict[int, float] = {}  # owner -> when it last finished a step
        self.next_health = 0.0

    def run(self) -> None:
        self.rebalance()
        log.info(
            "pipeline %s: %d owners over %d partitions",
            self.record.pipeline_id,
            len(self.groups),
            self.record.partitions,
        )
        while len(self.fenced) < len(self.groups):
            if self.runs:
                ready, _ = ray.wait(list(self.runs), num_returns=1, timeout=WATCH_S)
                for ref in ready:
                    self._ended(ref)
            else:  # no node could take them last round
                time.sleep(WATCH_S)
            self.rebalance()
            self.watch_steps()

    def watch_steps(self) -> None:
        """Kill an owner stuck in one step (or in its start) for STUCK_S; its successor claims
        new epochs, so whatever the stuck one does later is fenced."""
        now = time.monotonic()
        if now < self.next_health:
            return
        self.next_health = now + HEALTH_S
        asked = {
            actor.idle_s.remote(): index
            for index, actor in self.actors.items()
            if index not in self.stopping
        }
        if not asked:
            return
        answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=5)
        for ref in answered:
            with contextlib.suppress(RayError):  # it died meanwhile: run() tells
                self.progressed[asked[ref]] = now - ray.get(ref)
        for index in asked.values():
            if now - self.progressed.get(index, now) > STUCK_S:
                log.warning(
                    "owner %d of pipeline %s is stuck; replacing it", index, self.record.pipeline_id
                )
                ray.kill(self.actors[index], no_restart=True)
                self.stopping[index] = math.inf  # asked no more; counted as a restart

    def rebalance(self) -> None:
        """Stop the owners whose node changed, start the missing ones where they belong."""
        nodes = ray.nodes()
        self.addresses = {n["NodeID"]: n.get("NodeManagerAddress", "") for n in nodes}
        usable = nodes_with_capacity(nodes)
        if not usable:
            return  # no node to run on for now: ask again next round
        self.target = place(len(self.groups), usable, self.placement)
        for index in moves(self.placement, self.target):
            if index in self.fenced:
                continue
            if index not in self.actors:
                self._start(index, self.target[index])
            elif index not in self.stopping:
                log.info("pipeline %s: moving owner %d", self.record.pipeline_id, index)
                self.stopping[index] = time.monotonic() + STOP_TIMEOUT_S
                self.actors[index].stop.remote()
        for index, deadline in list(self.stopping.items()):
            if time.monotonic() > deadline:  # stuck mid-step: the successor fences it anyway
                ray.kill(self.actors[index], no_restart=True)
                self.stopping[index] = math.inf  # killed once; its run() ref ends it

    def _start(self, index: int, node_id: str) -> None:
        wait_name_free(naming.owner_name(self.record.pipeline_id, index))
        actor = PartitionOwnerActor.options(  # type: ignore[attr-defined]
            name=naming.owner_name(self.record.pipeline_id, index),
            namespace=naming.RAY_NAMESPACE,
            lifetime="non_detached",
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            runtime_env={"env_vars": {"POLARS_MAX_THREADS": "1"}},
        ).remote(self.record.model_dump(mode="json"), self.groups[index])  # Settings: job env
        self.actors[index] = actor
        self.runs[actor.run.remote()] = index
        self.placement[index] = node_id
        self.progressed[index] = time.monotonic()
        self._publish_placement()

    def _ended(self, ref: Any) -> None:
        index = self.runs.pop(ref)
        try:
            outcome = ray.get(ref)
        except RayError as exc:  # killed, crashed, its node lost, or never scheduled
            outcome = f"died: {type(exc).__name__}"
        log.warning("owner %d of pipeline %s ended (%s)", index, self.record.pipeline_id, outcome)
        ray.kill(self.actors.pop(index), no_restart=True)  # frees its name for the successor
        moved = self.stopping.pop(index, None) is not None and outcome == "stopped"
        del self.placement[index]
        if outcome == "fenced":
            self.fenced.add(index)
            self._publish_placement()
            return
        job = naming.pipeline_key(self.record.pipeline_id, "job")
        with _redis_may_be_down():  # a lost count, not a lost job
            self.redis.hincrby(job, "owner_moves" if moved else "owner_restarts", 1)
        if not moved:
            time.sleep(RESTART_BACKOFF_S)

    def _publish_placement(self) -> None:
        doc = [
            {
                "owner": index,
                "partitions": self.groups[index],
                "node_id": node,
                "node_address": self.addresses.get(node, ""),
            }
            for index, node in sorted(self.placement.items())
        ]
        with _redis_may_be_down():  # rewritten at the next change
            self.redis.set(
                naming.pipeline_key(self.record.pipeline_id, "placement"), orjson.dumps(doc)
            )


@contextlib.contextmanager
def _redis_may_be_down() -> Iterator[None]:
    """The coordinator's own bookkeeping waits for no Redis: while Redis is away the owners fail
    their commits and are restarted until it is back, and the coordinator must outlive that."""
    try:
        yield
    except RedisError as exc:
        log.warning("Redis unavailable for the coordinator's bookkeeping: %s", exc)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    record = load_record(settings, argv[0])
    ray_client.connect(settings, log_to_driver=True)
    Coordinator(settings, record).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
