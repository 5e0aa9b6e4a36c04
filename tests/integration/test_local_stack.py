"""The local stack really runs: a Kafka round trip, Redis with AOF, a Ray task and the Jobs API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cluster.settings import Settings
from cluster.stack import local_stack

pytestmark = pytest.mark.integration


def test_kafka_round_trip(stack: Settings) -> None:
    topic = f"esb-test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)

    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
    producer.produce(topic, key=b"k1", value=b"hello")
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"{topic}-group",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert (message.key(), message.value()) == (b"k1", b"hello")
    finally:
        consumer.close()
        admin.delete_topics([topic])


def test_redis_has_appendonly_on(stack: Settings) -> None:
    import redis

    client = redis.Redis.from_url(stack.redis)
    try:
        assert client.ping()
        if local_stack.status(stack)["redis"]["state"] == "running":  # ours, not REDIS_URL's
            assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.close()


def test_ray_task_runs_on_the_cluster(ray_session: Any) -> None:
    import ray

    @ray.remote(num_cpus=0)
    def one() -> int:
        return 1

    assert ray.get(one.remote(), timeout=60) == 1


def test_ray_jobs_api_answers(stack: Settings) -> None:
    from ray.job_submission import JobSubmissionClient

    if local_stack.status(stack)["ray"]["state"] != "running":
        pytest.skip("RAY_ADDRESS points at an external cluster; its dashboard address is unknown")
    client = JobSubmissionClient(f"http://127.0.0.1:{stack.ray_dashboard_port}")
    assert isinstance(client.list_jobs(), list)


def test_status_reports_every_service(stack: Settings) -> None:
    report = local_stack.status(stack)
    for name in ("kafka", "redis", "ray"):
        assert report[name]["state"] in ("running", "external"), report
        if report[name]["state"] == "running":
            assert report[name]["pid"] > 0
    assert report["kafka"]["address"] == stack.kafka_bootstrap
    assert report["redis"]["address"] == stack.redis
    assert report["ray"]["address"] == stack.ray_address


def test_up_again_reuses_the_running_stack(stack: Settings) -> None:
    before = local_stack.status(stack)
    fields = {"kafka": "kafka_bootstrap_servers", "redis": "redis_url", "ray": "ray_address"}
    # stack has the addresses filled in; clearing ours makes `up` look at its state file again.
    ours = {field: None for name, field in fields.items() if before[name]["state"] == "running"}
    lines: list[str] = []
    again = local_stack.up(stack.model_copy(update=ours), with_api=False, progress=lines.append)
    assert again == stack
    after = local_stack.status(stack)
    assert [after[name]["pid"] for name in fields] == [before[name]["pid"] for name in fields]
    assert sum("already running" in line for line in lines) == len(ours), lines
