"""A local Kafka cluster's shape: each node's ports, voters, directories and replication settings
(no broker here; tests/faults/test_stack_faults.py runs a real cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import StackError
from cluster.settings import Settings
from cluster.stack import kafka_broker, kafka_cluster, local_stack
from cluster.stack.processes import ProcessRecord


def settings(tmp_path: Path, **fields: object) -> Settings:
    pinned: dict[str, object] = {
        "kafka_bootstrap_servers": None,
        "kafka_security_protocol": "PLAINTEXT",
        "kafka_ssl_port": None,
        "kafka_port": 9092,
        "kafka_controller_port": 9093,
        "kafka_port_step": 10,
        "esb_state_dir": tmp_path,
    }
    return Settings(**{**pinned, **fields})  # type: ignore[arg-type]


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_three_nodes_form_one_quorum_with_rf3_internal_topics(tmp_path: Path) -> None:
    three = settings(tmp_path, kafka_brokers=3, kafka_ssl_port=9094)
    nodes = kafka_cluster.nodes(three)
    assert [n.name for n in nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    assert [(n.port, n.controller_port, n.ssl_port) for n in nodes] == [
        (9092, 9093, 9094),
        (9102, 9103, 9104),
        (9112, 9113, 9114),
    ]
    assert len({n.home for n in nodes}) == 3
    assert all(n.home.parent == tmp_path.resolve() / "kafka-cluster-3" for n in nodes)
    second = properties(kafka_broker.server_properties(three, Path("/d"), None, nodes[1]))
    assert second["node.id"] == "2"
    assert second["controller.quorum.voters"] == (
        "1@127.0.0.1:9093,2@127.0.0.1:9103,3@127.0.0.1:9113"
    )
    assert second["listeners"] == "PLAINTEXT://127.0.0.1:9102,CONTROLLER://127.0.0.1:9103"
    assert second["offsets.topic.replication.factor"] == "3"
    assert second["transaction.state.log.replication.factor"] == "3"
    assert second["transaction.state.log.min.isr"] == "2"
    assert second["default.replication.factor"] == "3"
    # Broker-wide 1, so a stream created with replication_factor 1 takes acks=all writes; the
    # bus gives its RF3 topics 2 (cluster.kafka.topics).
    assert second["min.insync.replicas"] == "1"


def test_a_single_broker_keeps_its_name_dir_and_settings(tmp_path: Path) -> None:
    (node,) = kafka_cluster.nodes(settings(tmp_path))
    assert (node.name, node.home) == ("kafka", tmp_path.resolve() / "kafka")
    found = properties(kafka_broker.server_properties(settings(tmp_path), Path("/d")))
    assert found["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert found["offsets.topic.replication.factor"] == "1"
    assert "num.io.threads" not in found  # Kafka's defaults, as before


def test_overlapping_node_ports_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="KAFKA_PORT_STEP"):
        kafka_broker.preflight(settings(tmp_path, kafka_brokers=3, kafka_port_step=1))


def test_every_node_shares_one_cluster_id(tmp_path: Path) -> None:
    first, second, _ = kafka_cluster.nodes(settings(tmp_path, kafka_brokers=3))
    assert kafka_cluster.cluster_id(first) == kafka_cluster.cluster_id(second)


def test_a_cluster_nodes_record_resolves_to_every_seed(tmp_path: Path) -> None:
    record = ProcessRecord(
        1,
        1,
        "127.0.0.1:9102",
        "broker.log",
        {"node_id": 2, "brokers": 3, "bootstrap": "127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112"},
    )
    update = local_stack._resolve_kafka(settings(tmp_path), record)
    assert update["kafka_bootstrap_servers"] == "127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112"
    assert (update["kafka_port"], update["kafka_brokers"]) == (9092, 3)
    assert kafka_cluster.recorded_size({"kafka-2": record}) == 3
    assert kafka_cluster.recorded_size({"redis": record}) is None


def test_up_refuses_a_running_cluster_of_another_size(tmp_path: Path) -> None:
    record = ProcessRecord(1, 1, "127.0.0.1:9092", "broker.log", {"brokers": 3, "node_id": 1})
    with pytest.raises(StackError, match="--kafka-brokers 3"):
        local_stack._check_kafka_size(settings(tmp_path), {"kafka-1": record})
    local_stack._check_kafka_size(settings(tmp_path, kafka_brokers=3), {"kafka-1": record})
