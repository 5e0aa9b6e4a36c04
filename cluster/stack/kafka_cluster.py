"""The shape of the local Kafka: KAFKA_BROKERS KRaft nodes on this machine, each one JVM that is
both broker and controller, the nodes together a KAFKA_BROKERS-voter controller quorum. This
module decides names, ports, directories and the replication settings; kafka_broker.py runs the
processes.

Node n (1-based) listens on KAFKA_PORT + (n - 1) * KAFKA_PORT_STEP, and its controller and TLS
listeners likewise from KAFKA_CONTROLLER_PORT and KAFKA_SSL_PORT:

>>> [n.address for n in nodes(Settings(kafka_brokers=3))]
['127.0.0.1:9092', '127.0.0.1:9102', '127.0.0.1:9112']
>>> voters(nodes(Settings(kafka_brokers=3)))
'1@127.0.0.1:9093,2@127.0.0.1:9103,3@127.0.0.1:9113'

Layout: one broker keeps <state_dir>/kafka (service `kafka`, as it always was); a cluster of N
lives in <state_dir>/kafka-cluster-N/ (services `kafka-1` .. `kafka-N`): `cluster.id`, shared by
every node's storage, and node-<n>/ with its server.properties, data/ and broker.log. A cluster
of another size never reuses that data (its voters are fixed when the storage is formatted).

Replication (cluster_properties): with 3 or more brokers the internal topics (consumer offsets,
transaction state, share-group state) get replication factor 3 and min.insync.replicas 2. The
broker-wide min.insync.replicas stays 1, so a stream created with replication_factor 1 still
takes acks=all writes; the bus sets min.insync.replicas=2 on each topic it creates with 3 or more
replicas (cluster.kafka.topics).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.settings import Settings

LABEL = "Kafka broker"
_NODE_NAME = re.compile(r"kafka(-[1-9][0-9]*)?")


@dataclass(frozen=True)
class Node:
    """One broker+controller of the local cluster."""

    node_id: int  # 1 .. brokers; Kafka's node.id
    brokers: int  # the cluster's size
    port: int  # PLAINTEXT, what clients and the other brokers use
    controller_port: int
    ssl_port: int | None
    home: Path  # config, data/ and broker.log

    @property
    def name(self) -> str:
        """The service's key in stack.json and in `esb status`."""
        return "kafka" if self.brokers == 1 else f"kafka-{self.node_id}"

    @property
    def label(self) -> str:
        return LABEL if self.brokers == 1 else f"{LABEL} {self.node_id}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ssl_address(self) -> str | None:
        return None if self.ssl_port is None else f"127.0.0.1:{self.ssl_port}"

    @property
    def cluster_home(self) -> Path:
        """Where the cluster's shared files (cluster.id) live."""
        return self.home if self.brokers == 1 else self.home.parent


def nodes(settings: Settings, brokers: int | None = None) -> list[Node]:
    """The nodes of a cluster of `brokers` (default KAFKA_BROKERS) with these settings' ports."""
    count = settings.kafka_brokers if brokers is None else brokers
    state = settings.esb_state_dir.resolve()
    step = settings.kafka_port_step
    found = []
    for index in range(count):
        shift = index * step
        home = state / "kafka" if count == 1 else state / f"kafka-cluster-{count}/node-{index + 1}"
        ssl = None if settings.kafka_ssl_port is None else settings.kafka_ssl_port + shift
        found.append(
            Node(
                node_id=index + 1,
                brokers=count,
                port=settings.kafka_port + shift,
                controller_port=settings.kafka_controller_port + shift,
                ssl_port=ssl,
                home=home,
            )
        )
    return found


def ports(node: Node) -> dict[str, int]:
    """The node's ports by the setting they come from (for messages about taken ports)."""
    suffix = "" if node.brokers == 1 else f" (node {node.node_id})"
    found = {
        f"KAFKA_PORT{suffix}": node.port,
        f"KAFKA_CONTROLLER_PORT{suffix}": node.controller_port,
    }
    if node.ssl_port is not None:
        found[f"KAFKA_SSL_PORT{suffix}"] = node.ssl_port
    return found


def voters(cluster: Iterable[Node]) -> str:
    """controller.quorum.voters: every node, `id@host:controller_port`."""
    return ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster)


def bootstrap(cluster: Iterable[Node], ssl: bool = False) -> str:
    """Every node's PLAINTEXT (or TLS) listener: the seed list clients get."""
    return ",".join((n.ssl_address or "") if ssl else n.address for n in cluster)


def cluster_properties(brokers: int) -> dict[str, str]:
    """Replication of the internal topics and the broker-wide defaults for this cluster size,
    and fewer threads for a cluster that shares a small machine with Ray."""
    replicas = min(3, brokers)
    min_isr = "2" if replicas >= 3 else "1"
    properties = {
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": min_isr,
        "min.insync.replicas": "1",  # RF1 streams stay writable; RF3 topics get 2 on their own
        "default.replication.factor": str(replicas),
    }
    if brokers > 1:
        properties |= {
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.replica.fetchers": "1",
            "num.recovery.threads.per.data.dir": "1",
            "unclean.leader.election.enable": "false",  # Kafka's default, stated: never lose
        }
    return properties


def is_broker_service(name: str) -> bool:
    """True for the stack.json keys of Kafka nodes: `kafka`, `kafka-1`, `kafka-2`, ..."""
    return _NODE_NAME.fullmatch(name) is not None


def recorded_size(state: Mapping[str, Any]) -> int | None:
    """The size of the cluster stack.json records (its nodes' `brokers`), None when none runs.
    `state` maps service names to ProcessRecords."""
    sizes = {
        int(rec.extra.get("brokers", 1)) for name, rec in state.items() if is_broker_service(name)
    }
    return max(sizes) if sizes else None


def cluster_id(node: Node) -> str:
    """The cluster's id, made once into <cluster home>/cluster.id: every node formats with it."""
    path = node.cluster_home / "cluster.id"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    made = _random_cluster_id()
    path.write_text(made + "\n")
    return made


def _random_cluster_id() -> str:
    """Same format as `kafka-storage.sh random-uuid`: url-safe base64 of 16 random bytes."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like a CLI flag
            return text
