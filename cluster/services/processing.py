"""StreamProcessingService: submit pipeline jobs to Ray, watch them, stop them, query results.

A pipeline runs as a Ray job (the Jobs API, this project as working_dir): `python -m actors.job
<pipeline_id>`. Its record lives in Redis at `esb:pl:<id>`; its results, checkpoints and
progress under the same prefix (cluster.stores.pipelines).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cluster import naming
from cluster.errors import InvalidInput, ServiceUnavailable
from cluster.models.pipelines import PipelineRecord
from cluster.services.bus import Bus, shared_bus
from cluster.services.streaming import check_identifier, kafka_topic
from cluster.settings import Settings, worker_env
from cluster.stores.pipelines import PUT_PATTERNS, pattern_set
from cluster.stores.records import TenantRecords
from pipelines.spec import PipelineSpec

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The job's working_dir is the project, but only its packages: an allowlist, so data or caches
# that happen to sit in the checkout never bloat the upload (the Jobs API caps it at 100 MiB).
PACKAGES = ("cluster", "actors", "pipelines", "serve", "event_streaming_bus")
WORKING_DIR_EXCLUDES = ["/*", *(f"!/{p}" for p in PACKAGES), "__pycache__"]
MAX_RESULTS_PAGE = 1000


class StreamProcessingService:
    def __init__(self, settings: Settings | None = None, *, bus: Bus | None = None) -> None:
        self._bus = bus or shared_bus(settings)

    @property
    def _records(self) -> TenantRecords[PipelineRecord]:
        # Built per use: the bus's Redis client belongs to the running event loop.
        return TenantRecords(
            self._bus.redis, PipelineRecord, "pipeline", naming.pipeline_key, naming.ALL_PIPELINES
        )

    @cached_property
    def _jobs(self) -> JobSubmissionClient:
        # Imported here, not above: Ray takes a second to import, which the CLI's other
        # commands and the SDK's users who never run pipelines should not pay.
        from ray.job_submission import JobSubmissionClient

        try:
            return JobSubmissionClient(self._bus.settings.jobs_url)
        except (ConnectionError, RuntimeError) as exc:
            raise ServiceUnavailable(
                f"the Ray Jobs API at {self._bus.settings.jobs_url} does not answer: {exc}"
            ) from None

    async def submit_pipeline(
        self, spec: PipelineSpec, tenant_id: str, created_by: str, owners: int = 2
    ) -> PipelineRecord:
        check_identifier(tenant_id, "tenant_id")
        if not 1 <= owners <= 64:
            raise InvalidInput("owners must be between 1 and 64")
        stream = await self._bus.streams.resolve(spec.source_stream, tenant_id)
        right = await self._co_partitioned_right(spec, tenant_id, stream)
        pipeline_id = uuid.uuid4().hex[:16]
        output = spec.sinks.kafka_topic and kafka_topic(tenant_id, spec.sinks.kafka_topic)
        if output and not await asyncio.to_thread(self._bus.topics.exists, output):
            replication = min(3, await asyncio.to_thread(self._bus.topics.broker_count))
            await asyncio.to_thread(
                self._bus.topics.create,
                output,
                stream.partitions,
                replication,
                {"cleanup.policy": "compact"},  # keyed by window: the latest revision wins
            )
        record = PipelineRecord(
            pipeline_id=pipeline_id,
            tenant_id=tenant_id,
            stream_id=stream.stream_id,
            kafka_topic=stream.kafka_topic,
            partitions=stream.partitions,
            owners=min(owners, stream.partitions),
            spec=spec,
            created_by=created_by,
            created_at=datetime.now(tz=UTC).isoformat(),
            job_id=f"esb-pipeline-{pipeline_id}",
            output_topic=output or None,
            encrypted=stream.encrypted,
            right_stream_id=right and right.stream_id,
            right_topic=right and right.kafka_topic,
        )
        redis = self._bus.redis
        await redis.set(naming.pipeline_key(pipeline_id), record.model_dump_json())
        await redis.sadd(naming.ALL_PIPELINES, pipeline_id)
        try:
            await asyncio.to_thread(self._submit_job, record)
        except Exception:
            await redis.delete(naming.pipeline_key(pipeline_id))
            await redis.srem(naming.ALL_PIPELINES, pipeline_id)
            raise
        return record

    async def _co_partitioned_right(self, spec: PipelineSpec, tenant_id: str, left: Any) -> Any:
        """A join's right stream when it is another stream: it must be co-partitioned (same
        partition count; publishers key both by the join key) so owners read the same
        partition of both. Answers None for a one-stream pipeline."""
        other = spec.join.right.source_stream if spec.join is not None else None
        if other is None or other == spec.source_stream:
            return None
        right = await self._bus.streams.resolve(other, tenant_id)
        partitions = left.partitions
        if right.stream_id == left.stream_id:
            raise InvalidInput(
                f"join.right.source_stream {other!r} is the pipeline's own source stream; "
                "omit it to join within one stream"
            )
        if right.partitions != partitions or right.encrypted:
            why = (
                f"it has {right.partitions} partitions and {spec.source_stream!r} has {partitions}"
                if right.partitions != partitions
                else "it is encrypted (joins read a plain right stream)"
            )
            raise InvalidInput(
                f"join.right.source_stream {other!r} is not co-partitioned with "
                f"{spec.source_stream!r}: {why}; join streams with the same partition count, "
                "both published with the join key as partition_key"
            )
        return right

    async def get_patterns(self, pipeline_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        """The pattern set the pipeline's owners run (or move to at their next commit)."""
        record = await self.get_record(pipeline_id, tenant_id)
        if record.spec.patterns is None:
            raise InvalidInput(f"pipeline {pipeline_id} computes no patterns")
        raw = await self._bus.redis.get(naming.pipeline_key(pipeline_id, "patterns"))
        if raw is None:
            patterns = [p.model_dump(mode="json") for p in record.spec.patterns]
            return {"pipeline_id": pipeline_id, "version": 1, "patterns": patterns}
        version, patterns = pattern_set(raw)
        return {"pipeline_id": pipeline_id, "version": version, "patterns": patterns}

    async def put_patterns(
        self, pipeline_id: str, patterns: list[Any], tenant_id: str | None = None
    ) -> dict[str, Any]:
        """Replace the patterns of a running pipeline: validated like a submit (the spec with
        these patterns must be valid), stored as the next version, applied by each owner at
        its next commit boundary without restarting the job. Removed patterns lose their
        state; new or changed ones start from the next record."""
        record = await self.get_record(pipeline_id, tenant_id)
        if record.spec.patterns is None:
            raise InvalidInput(f"pipeline {pipeline_id} computes no patterns")
        data = {**record.spec.model_dump(mode="json"), "patterns": patterns}
        checked = PipelineSpec.from_data(data).patterns or []
        doc = orjson.dumps([p.model_dump(mode="json") for p in checked]).decode()
        key = naming.pipeline_key(pipeline_id, "patterns")
        version = int(await self._bus.redis.eval(PUT_PATTERNS, 1, key, doc))
        return {"pipeline_id": pipeline_id, "version": version, "patterns": orjson.loads(doc)}

    async def owner_pattern_versions(self, pipeline_id: str) -> dict[str, int]:
        """Owner (its partitions, e.g. "0-2") -> the pattern version it runs."""
        raw = await self._bus.redis.hgetall(naming.pipeline_key(pipeline_id, "owners"))
        return {_text(k): int(v) for k, v in raw.items()}

    def _submit_job(self, record: PipelineRecord) -> None:
        settings = self._bus.settings
        if record.encrypted and not (settings.esb_master_key or settings.esb_master_key_file):
            raise InvalidInput("the stream is encrypted: set ESB_MASTER_KEY_FILE or ESB_MASTER_KEY")
        self._jobs.submit_job(
            # The interpreter this process runs on is the cluster's (the Ray workers'), with the
            # project installed; a bare `python` may be another one.
            entrypoint=f"{sys.executable} -m actors.job {record.pipeline_id}",
            submission_id=record.job_id,
            runtime_env={
                "working_dir": str(PROJECT_ROOT),
                "excludes": WORKING_DIR_EXCLUDES,
                "env_vars": {**worker_env(settings), "POLARS_MAX_THREADS": "1"},
            },
            entrypoint_num_cpus=0,
            metadata={"pipeline_id": record.pipeline_id, "tenant_id": record.tenant_id},
        )

    async def get_record(self, pipeline_id: str, tenant_id: str | None = None) -> PipelineRecord:
        return await self._records.get(pipeline_id, tenant_id)

    async def list_pipelines(self, tenant_id: str | None = None) -> list[PipelineRecord]:
        return await self._records.list(tenant_id)

    async def status(self, pipeline_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        """The job's state and progress: lag per partition, events, windows, late events."""
        record = await self.get_record(pipeline_id, tenant_id)
        state = await self.state(record)
        marks = await asyncio.to_thread(self._bus.topics.watermarks, record.kafka_topic)
        redis = self._bus.redis
        partitions, totals = [], dict[str, int]()
        for p in range(record.partitions):
            raw = await redis.hgetall(naming.pipeline_key(pipeline_id, f"progress:{p}"))
            counters = {_text(k): int(v) for k, v in raw.items()}
            committed = counters.pop("offset", None)
            if committed is not None and committed < 0:
                committed = None  # only the join's right topic was read so far
            high = marks.get(p, (0, 0))[1]
            lag = high - (committed if committed is not None else marks.get(p, (0, 0))[0])
            partitions.append(
                {
                    "partition": p,
                    "committed_offset": committed,
                    "end_offset": high,
                    "lag": lag,
                    **counters,
                }
            )
            for name, value in counters.items():
                totals[name] = totals.get(name, 0) + value
        restarts, moved = await redis.hmget(
            naming.pipeline_key(pipeline_id, "job"), ["owner_restarts", "owner_moves"]
        )
        placement = await redis.get(naming.pipeline_key(pipeline_id, "placement"))
        return {
            **record.model_dump(mode="json"),
            "state": state,
            "owner_restarts": int(restarts or 0),
            "owner_moves": int(moved or 0),
            "placement": orjson.loads(placement) if placement else [],
            "progress": {**totals, "lag": sum(p["lag"] for p in partitions)},
            "partitions_progress": partitions,
            "owners_patterns_version": (
                await self.owner_pattern_versions(pipeline_id) if record.spec.patterns else {}
            ),
        }

    async def state(self, record: PipelineRecord) -> str:
        """STOPPED, or the Ray job's status (PENDING, RUNNING, FAILED, ...; UNKNOWN)."""
        if record.stopped:
            return "STOPPED"
        return await asyncio.to_thread(self._job_status, record.job_id)

    def _job_status(self, job_id: str) -> str:
        try:
            return str(self._jobs.get_job_status(job_id).value)
        except RuntimeError:
            return "UNKNOWN"

    async def stop_pipeline(self, pipeline_id: str, tenant_id: str | None = None) -> PipelineRecord:
        """Stop the job; its results stay queryable."""
        record = await self.get_record(pipeline_id, tenant_id)
        await asyncio.to_thread(self._stop_job, record.job_id)
        record = record.model_copy(update={"stopped": True})
        await self._bus.redis.set(naming.pipeline_key(pipeline_id), record.model_dump_json())
        return record

    def _stop_job(self, job_id: str) -> None:
        with contextlib.suppress(RuntimeError):  # already finished, or unknown to this cluster
            self._jobs.stop_job(job_id)

    async def results(
        self,
        pipeline_id: str,
        tenant_id: str | None = None,
        *,
        key: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        latest: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Window results by key (window start in [from_ms, to_ms)), by time range (window end),
        or the latest N windows; paginated by `offset`."""
        if not 1 <= limit <= MAX_RESULTS_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_RESULTS_PAGE}")
        await self.get_record(pipeline_id, tenant_id)
        redis, base = self._bus.redis, naming.pipeline_key(pipeline_id)
        low = "-inf" if from_ms is None else from_ms
        high = "+inf" if to_ms is None else f"({to_ms}"
        if latest is not None:
            members = await redis.zrevrange(
                f"{base}:by-end", offset, min(latest, offset + limit) - 1
            )
        elif key is not None:
            members = await redis.zrangebyscore(f"{base}:by-key:{key}", low, high, offset, limit)
        else:
            members = await redis.zrangebyscore(f"{base}:by-end", low, high, offset, limit)
        docs = (
            await redis.hmget(f"{base}:res", [m for m in members if isinstance(m, bytes | str)])
            if members
            else []
        )
        results = [orjson.loads(d) for d in docs if d]
        more = len(members) == limit and (latest is None or offset + limit < latest)
        return {
            "pipeline_id": pipeline_id,
            "results": results,
            "next_offset": offset + limit if more else None,
        }

    async def dead_letters(
        self, pipeline_id: str, tenant_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        await self.get_record(pipeline_id, tenant_id)
        raw = await self._bus.redis.lrange(naming.pipeline_key(pipeline_id, "dead"), 0, limit - 1)
        return [orjson.loads(r) for r in raw]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
