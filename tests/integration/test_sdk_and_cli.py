"""The product quick start through the SDK, and `esb streams apply`, on the real stack."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from cluster.kafka.topics import TopicAdmin
from cluster.settings import Settings
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration


def stack_env(stack: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "REDIS_URL": stack.redis,
    }


def test_sdk_quick_start_as_written(stack: Settings, unique: str, tmp_path: Path) -> None:
    tenant = f"your_tenant_{unique}"  # one tenant per run: the quick start's names are fixed
    script = tmp_path / "quickstart.py"
    script.write_text(
        textwrap.dedent(f"""
        import asyncio
        from event_streaming_bus import (
            EventConfig, EventPublishingService, EventStreamingService, StreamConfig,
        )

        async def main():
            stream_id = await EventStreamingService().create_stream(
                config=StreamConfig(stream_name="user_events", topic_name="apg-user-events",
                                    source_capability="user_management", partitions=6,
                                    replication_factor=3),
                tenant_id="{tenant}", created_by="your_user")
            event_id = await EventPublishingService().publish_event(
                event_config=EventConfig(event_type="user.created",
                                         source_capability="user_management",
                                         aggregate_id="user_123", aggregate_type="User"),
                payload={{"username": "john_doe", "email": "john@example.com"}},
                stream_id=stream_id, tenant_id="{tenant}", user_id="your_user")
            print(stream_id, event_id)

        asyncio.run(main())
    """)
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=stack_env(stack),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    stream_id, event_id = done.stdout.split()

    [record] = read_topic(stack, f"esb.{tenant}.apg-user-events", expected=1)
    ce = orjson.loads(record.value())
    assert (ce["id"], ce["streamid"], record.key()) == (event_id, stream_id, b"user_123")
    assert ce["data"]["username"] == "john_doe"


def esb(stack: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli.main", *args],
        env=stack_env(stack),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_streams_apply_is_idempotent_and_alters_retention(
    stack: Settings, unique: str, tmp_path: Path
) -> None:
    spec = tmp_path / "streams.yaml"
    template = textwrap.dedent("""
        tenant_id: ops{unique}
        streams:
          - stream_name: audit
            topic_name: audit-log
            source_capability: audit
            partitions: 3
            replication_factor: 1
            retention_time_ms: {retention}
            compression_type: zstd
            cleanup_policy: delete
          - stream_name: accounts
            topic_name: accounts
            source_capability: ledger
            partitions: 2
            cleanup_policy: compact
    """)
    spec.write_text(template.format(unique=unique, retention=86_400_000))
    first = esb(stack, "streams", "apply", str(spec))
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created") == 2

    second = esb(stack, "streams", "apply", str(spec))
    assert second.returncode == 0 and second.stdout.count(": unchanged") == 2, second.stdout

    topics = TopicAdmin(stack)
    topic = f"esb.ops{unique}.audit-log"
    assert topics.configs(topic)["retention.ms"] == "86400000"
    assert topics.configs(topic)["compression.type"] == "zstd"
    assert topics.configs(f"esb.ops{unique}.accounts")["cleanup.policy"] == "compact"

    spec.write_text(template.format(unique=unique, retention=3_600_000))
    third = esb(stack, "streams", "apply", str(spec))
    assert third.returncode == 0 and "audit: updated" in third.stdout, third.stdout
    assert topics.configs(topic)["retention.ms"] == "3600000"
    assert "accounts: unchanged" in third.stdout


def test_streams_apply_refuses_a_bad_file_with_a_message(stack: Settings, tmp_path: Path) -> None:
    spec = tmp_path / "streams.yaml"
    spec.write_text("tenant_id: t\nstreams:\n  - stream_name: x\n    partitions: lots\n")
    done = esb(stack, "streams", "apply", str(spec))
    assert done.returncode == 1
    assert "stream #1" in done.stderr and "Traceback" not in done.stderr
