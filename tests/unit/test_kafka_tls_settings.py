"""How TLS settings become the broker's listeners and the clients' config (no broker here; the
e2e test tests/e2e/test_tls_stack.py talks to a real one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cluster.errors import StackError
from cluster.kafka.clients import client_config, consumer_config, producer_config
from cluster.settings import Settings
from cluster.stack.kafka_broker import preflight, server_properties
from cluster.stack.local_stack import _resolve_kafka
from cluster.stack.processes import ProcessRecord

BROKER = ProcessRecord(1, 1, "127.0.0.1:9092", "broker.log")
WITH_TLS = ProcessRecord(
    1, 1, "127.0.0.1:9092", "broker.log", {"ssl_address": "127.0.0.1:9094", "ssl_ca": "/s/ca.pem"}
)


def settings(**fields: Any) -> Settings:
    """Settings with the TLS-related fields pinned, whatever the environment says."""
    pinned: dict[str, Any] = {
        "kafka_bootstrap_servers": None,
        "kafka_security_protocol": "PLAINTEXT",
        "kafka_ssl_port": None,
        "kafka_ssl_ca_location": None,
    }
    return Settings(**{**pinned, **fields})


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_the_ssl_listener_joins_plaintext_with_a_pem_keystore() -> None:
    ssl = settings(kafka_port=9092, kafka_controller_port=9093, kafka_ssl_port=9094)
    found = properties(server_properties(ssl, Path("/d"), Path("/k/keystore.pem")))
    assert found["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9094"
    assert found["listeners"].endswith(",CONTROLLER://127.0.0.1:9093")
    assert "SSL:SSL" in found["listener.security.protocol.map"].split(",")
    assert found["inter.broker.listener.name"] == "PLAINTEXT"
    assert found["ssl.keystore.type"] == "PEM"
    assert found["ssl.keystore.location"] == "/k/keystore.pem"
    assert "ssl.keystore.password" not in found  # Kafka refuses one with PEM


def test_without_an_ssl_port_there_is_no_ssl_listener() -> None:
    found = properties(server_properties(settings(kafka_port=9092), Path("/d")))
    assert found["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert not any(key.startswith("ssl.") for key in found)


def test_ssl_clients_need_the_local_ssl_listener() -> None:
    with pytest.raises(StackError, match="KAFKA_SSL_PORT"):
        preflight(settings(kafka_security_protocol="SSL"))


def test_resolved_settings_point_ssl_clients_at_the_tls_listener_and_its_ca() -> None:
    ssl = _resolve_kafka(settings(kafka_security_protocol="SSL"), WITH_TLS)
    assert ssl["kafka_bootstrap_servers"] == "127.0.0.1:9094"
    assert ssl["kafka_ssl_ca_location"] == Path("/s/ca.pem")
    plain = _resolve_kafka(settings(), WITH_TLS)
    assert plain["kafka_bootstrap_servers"] == "127.0.0.1:9092"
    assert plain["kafka_ssl_ca_location"] == Path("/s/ca.pem")  # for users to point clients at
    with pytest.raises(StackError, match="no TLS listener"):
        _resolve_kafka(settings(kafka_security_protocol="SSL"), BROKER)


def test_every_client_config_carries_the_security_settings() -> None:
    ssl = settings(
        kafka_security_protocol="SSL", kafka_ssl_port=9094, kafka_ssl_ca_location="/s/ca.pem"
    )
    for config in (client_config(ssl), producer_config(ssl), consumer_config(ssl, "g")):
        assert config["bootstrap.servers"] == "127.0.0.1:9094"
        assert config["security.protocol"] == "SSL"
        assert config["ssl.ca.location"] == "/s/ca.pem"
    plain = client_config(settings(kafka_ssl_ca_location="/s/ca.pem"))
    assert plain["security.protocol"] == "PLAINTEXT" and "ssl.ca.location" not in plain
