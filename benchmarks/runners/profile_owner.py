"""Where the pipeline's time goes: the partition owner's hot path (actors/partition_owner.py,
the plain class, no Ray) under cProfile, reading every partition of a pre-loaded topic until all
window results are committed. Prints cumulative seconds per stage and the top functions by self
time. Also times one consume call with fewer records waiting than the owner's batch size, which
is what bounds end-to-end latency.

    python -m benchmarks.runners.profile_owner --bootstrap B --redis URL --topic T \
        --partitions 4 --windows W
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import uuid

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from redis import Redis

from actors.partition_owner import MAX_BATCH, PartitionOwner
from benchmarks.pipeline_run import window_spec
from benchmarks.runners.common import Clock
from cluster import naming
from cluster.kafka.clients import client_config
from cluster.models.pipelines import PipelineRecord
from cluster.settings import Settings
from pipelines.spec import PipelineSpec

# Stage -> (file suffix, function name) whose cumulative time is the stage's.
STAGES = {
    "Kafka consume (Consumer.consume)": ("~", "<method 'consume' of 'cimpl.Consumer' objects>"),
    "bulk decode (decode_cloudevents_lenient)": ("decode.py", "decode_cloudevents_lenient"),
    "window operator (WindowOperator.process)": ("base.py", "process"),
    "results to dicts (DataFrame.to_dicts)": ("frame.py", "to_dicts"),
    "Redis commit (PipelineStore.commit)": ("pipeline_store.py", "commit"),
    "operator snapshot (WindowOperator.snapshot)": ("base.py", "snapshot"),
}


def stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    found = dict.fromkeys(STAGES, 0.0)
    for (path, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for stage, (suffix, function) in STAGES.items():
            if name == function and path.endswith(suffix):
                found[stage] += cumulative
    return found


def top_self_time(stats: pstats.Stats, count: int = 12) -> list[dict[str, object]]:
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    return [
        {"function": f"{path.rsplit('/', 2)[-1]}:{line}({name})", "self_s": tt, "cum_s": ct}
        for (path, line, name), (_cc, _nc, tt, ct, _callers) in rows[:count]
    ]


def consume_wait(settings: Settings, topic: str, partitions: int) -> dict[str, float]:
    """With 100 records waiting: seconds for one consume(MAX_BATCH, 0.5) as the owner calls it
    (librdkafka waits for the full batch or the timeout), and for the alternative of
    consume(1, 0.5) then consume(MAX_BATCH - 1, 0) (wait for the first, take what is there)."""
    consumer = Consumer(client_config(settings, **{"group.id": uuid.uuid4().hex}))
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in range(partitions)])
    consumer.consume(1, 2.0)  # assignment settles
    producer = Producer(client_config(settings, **{"linger.ms": 0}))
    found: dict[str, float] = {}
    for name in ("batch_wait", "first_then_drain"):
        for i in range(100):
            producer.produce(topic, b"{}", partition=i % partitions)
        producer.flush(10)
        time.sleep(0.3)  # fetched into the client's queue
        began = time.perf_counter()
        if name == "batch_wait":
            got = len(consumer.consume(MAX_BATCH, 0.5))
        else:
            first = consumer.consume(1, 0.5)
            got = len(first) + len(consumer.consume(MAX_BATCH - 1, 0))
        found[f"{name}_s"] = time.perf_counter() - began
        found[f"{name}_records"] = got
    consumer.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--bootstrap", "--redis", "--topic", "--scratch-topic"):
        parser.add_argument(name, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--windows", type=int, required=True)
    args = parser.parse_args()
    settings = Settings(kafka_bootstrap_servers=args.bootstrap, redis_url=args.redis)
    record = PipelineRecord(
        pipeline_id=f"profile{uuid.uuid4().hex[:8]}",
        tenant_id="bench",
        stream_id="profile",
        kafka_topic=args.topic,
        partitions=args.partitions,
        owners=1,
        spec=PipelineSpec.model_validate(window_spec("profile")),
        created_by="bench",
        created_at="now",
        job_id="none",
    )
    owner = PartitionOwner(settings, record, list(range(args.partitions)))
    results = Redis.from_url(args.redis)
    key = naming.pipeline_key(record.pipeline_id, "res")
    profiler = cProfile.Profile()
    clock = Clock()
    events = 0
    profiler.enable()
    while int(results.hlen(key)) < args.windows:
        events += owner.step(timeout_s=0.1)
        clock.first()
    profiler.disable()
    seconds = time.perf_counter() - clock.t0
    owner.close()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    wait = consume_wait(settings, args.scratch_topic, args.partitions)
    clock.report(
        events,
        wall_s=seconds,
        stages_s=stage_seconds(stats),
        top_self_time=top_self_time(stats),
        profiled_s=stats.total_tt,  # type: ignore[attr-defined]
        consume_wait=wait,
        max_batch=MAX_BATCH,
    )


if __name__ == "__main__":
    main()
