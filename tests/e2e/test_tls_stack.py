"""TLS in transit as a user turns it on: `esb up` with API_TLS_* serves HTTPS, KAFKA_SSL_PORT adds
a Kafka SSL listener, and settings with KAFKA_SECURITY_PROTOCOL=SSL make the bus's own Kafka
clients talk TLS to it. Clients that do not trust the CA are refused, on both. The stack runs in
separate processes on free ports with its own state dir, like test_cli_stack."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from cluster.kafka.topics import TopicAdmin
from cluster.security.tls import ensure_certs
from cluster.settings import Settings
from tests.e2e.conftest import esb_cli, stack_env

pytestmark = pytest.mark.integration
DEADLINE_S = 60.0


def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """condition()'s first truthy answer, polled until the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
    raise AssertionError(f"timed out after {deadline_s:.0f}s waiting for {what}")


def round_trip(config: dict[str, Any], topic: str) -> bytes | None:
    """Produce one record and read it back from the start of partition 0."""
    value = uuid.uuid4().hex.encode()
    producer = Producer(config)
    producer.produce(topic, value, partition=0)
    assert producer.flush(DEADLINE_S) == 0, "the record was not acknowledged"
    consumer = Consumer({**config, "group.id": f"tls-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        found = wait_for(
            lambda: (m := consumer.poll(1.0)) is not None and m.error() is None and m.value(),
            "the record back",
        )
        return found if found == value else None
    finally:
        consumer.close()


def refused_without_ca(bootstrap: str, topic: str) -> str:
    """The error an SSL producer that does not trust our CA gets; its record is not delivered."""
    errors: list[KafkaError] = []
    delivered: list[bool] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SSL",
            "error_cb": errors.append,
            "message.timeout.ms": 5_000,
        }
    )
    producer.produce(topic, b"never", on_delivery=lambda err, _m: delivered.append(err is None))
    wait_for(lambda: producer.poll(0.5) >= 0 and delivered, "the record to fail")
    assert delivered == [False]
    return " | ".join(e.str() for e in errors)


def test_https_api_and_kafka_ssl_listener(tmp_path: Path) -> None:
    state = tmp_path / "state"
    api_tls = ensure_certs(tmp_path / "api-tls")
    kafka_ca = state / "tls" / "ca.pem"  # made by `esb up`
    env = stack_env(
        state,
        "KAFKA_SSL_PORT",
        kafka_security_protocol="SSL",
        kafka_ssl_ca_location=kafka_ca,
        api_tls_certfile=api_tls.cert,
        api_tls_keyfile=api_tls.key,
    )
    api, kafka_ssl = env["API_PORT"], int(env["KAFKA_SSL_PORT"])
    esb = esb_cli(env)

    up = esb("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        url = f"https://127.0.0.1:{api}"
        assert f"{url}/docs" in up.stdout
        kafka_line = next(
            line for line in esb("status").stdout.splitlines() if line.startswith("kafka")
        )
        assert f"tls_address=127.0.0.1:{kafka_ssl}" in kafka_line

        # HTTPS: verified against the API's CA; a client trusting another CA is refused.
        trusted = ssl.create_default_context(cafile=api_tls.ca_cert)
        assert httpx.get(f"{url}/health", verify=trusted, timeout=30).status_code == 200
        stranger = ssl.create_default_context(cafile=ensure_certs(tmp_path / "other").ca_cert)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/health", verify=stranger, timeout=30)

        # The bus's own Kafka clients (admin, consumer), from the settings that env gives.
        bus = TopicAdmin(
            Settings(
                kafka_bootstrap_servers=None,
                kafka_ssl_port=kafka_ssl,
                kafka_security_protocol="SSL",
                kafka_ssl_ca_location=kafka_ca,
            )
        )
        topic = f"tls-{uuid.uuid4().hex[:8]}"
        bus.create(topic, 1, 1, {})

        # A plain Kafka client over the SSL listener: works with the CA, refused without it.
        bootstrap = f"127.0.0.1:{kafka_ssl}"
        with_ca = {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": str(kafka_ca),
        }
        assert round_trip(with_ca, topic) is not None
        assert "certificate verify failed" in refused_without_ca(bootstrap, topic)
        assert bus.watermarks(topic) == {0: (0, 1)}
    finally:
        down = esb("down")
    assert down.returncode == 0, down.stderr
