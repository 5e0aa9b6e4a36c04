"""Apache Kafka nodes in KRaft mode (broker + controller in one JVM) for the local stack: one, or
each node of a KAFKA_BROKERS cluster (kafka_cluster.py: ports, directories, replication). Their
jars come from Maven Central through kafka_dist/pom.xml, fetched once into the cache.

The broker listens on 127.0.0.1 only; data lives in <state_dir>/kafka/data and survives restarts.
With KAFKA_SSL_PORT set it also listens with TLS there, with a CA and broker certificate made in
<state_dir>/tls (cluster.security.tls); clients trust <state_dir>/tls/ca.pem. PLAINTEXT stays for
the broker's own traffic and the readiness probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cluster.errors import StackError
from cluster.kafka.clients import security_config
from cluster.security import tls
from cluster.settings import Settings
from cluster.stack import kafka_cluster, processes
from cluster.stack.kafka_cluster import LABEL, Node
from cluster.stack.processes import ProcessRecord, Progress, say

DIST_DIR = Path(__file__).parent / "kafka_dist"
POM = DIST_DIR / "pom.xml"
LOG4J_CONFIG = DIST_DIR / "log4j2.xml"
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 30.0
_MARKER = ".complete"
HINT = (
    "Fix: read the broker log above; a stale <state_dir>/kafka/data from another Kafka version "
    "can be removed, or set KAFKA_BOOTSTRAP_SERVERS to use an existing cluster."
)


def kafka_version() -> str:
    """The Kafka version pinned in the pom, so the cache dir follows the pom."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not node.text:
        raise StackError(f"{POM} has no <kafka.version> property.")
    return node.text.strip()


def libs_dir(settings: Settings) -> Path:
    return settings.esb_cache_dir.expanduser().resolve() / f"kafka-{kafka_version()}" / "libs"


def ensure_jars(settings: Settings, progress: Progress) -> Path:
    """Copy Kafka's jars into the cache once; a marker holding the pom's hash makes an interrupted
    download, or a changed pom, be fetched again."""
    libs = libs_dir(settings)
    marker = libs / _MARKER
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text().strip() == pom_hash:
        return libs
    with processes.file_lock(libs.parent / ".lock"):
        if marker.exists() and marker.read_text().strip() == pom_hash:
            return libs
        mvn = processes.require_executable("mvn", "maven", progress)
        say(progress, f"fetching Kafka {kafka_version()} jars with Maven into {libs} (once) ...")
        started = time.monotonic()
        shutil.rmtree(libs, ignore_errors=True)
        cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
        result = subprocess.run(
            [*cmd, f"-DoutputDirectory={libs}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            raise StackError(
                f"Maven could not fetch the Kafka jars (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-3000:]}\n"
                "Fix: check that Maven Central is reachable (proxy/mirror in ~/.m2/settings.xml), "
                "or set KAFKA_BOOTSTRAP_SERVERS to use an existing cluster."
            )
        marker.write_text(pom_hash + "\n")
        say(progress, f"Kafka jars fetched in {time.monotonic() - started:.1f}s")
    return libs


def server_properties(
    settings: Settings, data_dir: Path, keystore: Path | None = None, node: Node | None = None
) -> str:
    """A node's config (the single broker's when `node` is None): broker and controller in one,
    loopback only, a voter of the cluster's quorum; with a keystore (PEM: PKCS#8 key, then the
    certificate chain), an SSL listener on the node's TLS port."""
    node = node or kafka_cluster.nodes(settings, 1)[0]
    cluster = kafka_cluster.nodes(settings, node.brokers)
    listeners = [f"PLAINTEXT://{node.address}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    ssl: dict[str, str] = {}
    if keystore is not None and node.ssl_address is not None:
        listeners.append(f"SSL://{node.ssl_address}")
        protocols.append("SSL:SSL")
        # Kafka reads a PEM keystore natively (no JKS, no keystore password: PEM forbids one).
        ssl = {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore)}
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": kafka_cluster.voters(cluster),
        "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{node.controller_port}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(protocols),
        **ssl,
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        **kafka_cluster.cluster_properties(node.brokers),
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _java_cmd(java: str, heap: str, libs: Path) -> list[str]:
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        f"{libs}/*",
    ]


def format_storage(
    java: str, libs: Path, configs: dict[Path, Path], cluster_id: str, log_path: Path
) -> None:
    """`kafka-storage.sh format` of each data dir (key) that has no meta.properties yet, with its
    node's config (value), all at once (one short JVM each); a formatted dir is kept as it is."""
    todo = {
        data: config for data, config in configs.items() if not (data / "meta.properties").exists()
    }
    if not todo:
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        runs = [
            subprocess.Popen(
                [
                    *_java_cmd(java, "128m", libs),
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id",
                    cluster_id,
                    "--config",
                    str(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for config in todo.values()
        ]
        codes = [run.wait(timeout=120) for run in runs]
    if any(codes):
        dirs = ", ".join(str(data) for data in todo)
        raise processes.failure(f"Formatting Kafka storage in {dirs} failed.", log_path, HINT)


def preflight(settings: Settings, node: Node | None = None) -> None:
    """Fail before anything starts when a port we need (of `node`, else of every node) is taken
    or used twice, or SSL has no listener."""
    if settings.kafka_security_protocol.upper() != "PLAINTEXT" and settings.kafka_ssl_port is None:
        raise StackError(
            f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs a TLS listener on "
            "the local broker. Fix: set KAFKA_SSL_PORT (e.g. 9094), or KAFKA_BOOTSTRAP_SERVERS "
            "to a cluster that speaks it."
        )
    cluster = kafka_cluster.nodes(settings)
    every = {name: port for n in cluster for name, port in kafka_cluster.ports(n).items()}
    if len(set(every.values())) < len(every):
        raise StackError(
            f"The {len(cluster)} Kafka nodes' ports overlap ({every}). Fix: set KAFKA_PORT_STEP "
            "larger than the spread of KAFKA_PORT, KAFKA_CONTROLLER_PORT and KAFKA_SSL_PORT."
        )
    ports = every if node is None else kafka_cluster.ports(node)
    processes.require_free_ports(
        node.label if node else LABEL,
        ports,
        "Fix: stop what listens there, choose other ports (KAFKA_PORT, KAFKA_CONTROLLER_PORT, "
        "KAFKA_SSL_PORT, KAFKA_PORT_STEP), or point KAFKA_BOOTSTRAP_SERVERS at that broker.",
    )


def write_keystore(settings: Settings, home: Path) -> tuple[Path, Path]:
    """(keystore, CA certificate): the broker's PEM keystore, from certificates in <state>/tls."""
    files = tls.ensure_certs(settings.esb_state_dir.resolve() / "tls")
    keystore = home / "keystore.pem"
    keystore.touch(mode=0o600)
    keystore.chmod(0o600)
    keystore.write_bytes(files.key.read_bytes() + files.cert.read_bytes())
    return keystore, files.ca_cert


def _prepare(settings: Settings, node: Node) -> tuple[Path, dict[str, Any]]:
    """Write the node's config (and keystore); answers it and what its record keeps: the TLS
    listener and CA, and for a cluster the node's id, the cluster's size and seed lists."""
    data_dir = node.home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    keystore: Path | None = None
    extra: dict[str, Any] = {}
    if node.ssl_address is not None:
        keystore, ca = write_keystore(settings, node.home)
        extra = {"ssl_address": node.ssl_address, "ssl_ca": str(ca)}
    if node.brokers > 1:
        cluster = kafka_cluster.nodes(settings, node.brokers)
        extra |= {
            "node_id": node.node_id,
            "brokers": node.brokers,
            "bootstrap": kafka_cluster.bootstrap(cluster),
        }
        if node.ssl_address is not None:
            extra["ssl_bootstrap"] = kafka_cluster.bootstrap(cluster, ssl=True)
    config = node.home / "server.properties"
    config.write_text(server_properties(settings, data_dir, keystore, node))
    return config, extra


def launch(settings: Settings, progress: Progress, node: Node | None = None) -> ProcessRecord:
    """Fetch jars, write the config, format storage if new, and spawn the node (the single
    broker when None; not waited). A cluster's first launch formats every new node's storage."""
    java = processes.require_executable("java", "openjdk-17-jre-headless", progress)
    libs = ensure_jars(settings, progress)
    node = node or kafka_cluster.nodes(settings, 1)[0]
    config, extra = _prepare(settings, node)
    configs = {node.home / "data": config}
    for other in kafka_cluster.nodes(settings, node.brokers):
        if other != node and not (other.home / "data" / "meta.properties").exists():
            configs[other.home / "data"] = _prepare(settings, other)[0]
    tls_note = f" (TLS on {extra['ssl_address']})" if "ssl_address" in extra else ""
    say(progress, f"starting {node.label} on {node.address}{tls_note} ...")
    cluster_id = kafka_cluster.cluster_id(node)
    format_storage(java, libs, configs, cluster_id, node.cluster_home / "format.log")
    heap = settings.kafka_heap if node.brokers == 1 else settings.kafka_cluster_heap
    return processes.spawn(
        [*_java_cmd(java, heap, libs), "kafka.Kafka", str(config)],
        address=node.address,
        log_path=node.home / "broker.log",
        cwd=node.home,
        extra=extra,
    )


def is_ready(
    bootstrap: str,
    security: dict[str, str] | None = None,
    timeout_s: float = 2.0,
    node_id: int | None = None,
) -> bool:
    """True when the cluster answers a metadata request with at least one broker (with
    `node_id`: with that node among the live brokers); `security` comes from
    cluster.kafka.clients.security_config (PLAINTEXT when None)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not processes.tcp_open(host or "127.0.0.1", int(port)):
        return False  # spares librdkafka's connection-refused noise while the JVM boots
    config = {"bootstrap.servers": bootstrap, **(security or security_config("PLAINTEXT"))}
    admin = AdminClient({**config, "log_level": 0})
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
    except KafkaException:
        return False
    return bool(brokers) and (node_id is None or node_id in brokers)


def is_record_ready(record: ProcessRecord) -> bool:
    """The PLAINTEXT listener answers, and the TLS one too (verified with our CA) when there; a
    cluster's node once the controllers count it as a live broker (registered, not fenced)."""
    node_id = record.extra.get("node_id")
    if not is_ready(record.address, node_id=node_id):
        return False
    ssl_address = record.extra.get("ssl_address")
    return ssl_address is None or is_ready(
        ssl_address, security_config("SSL", record.extra["ssl_ca"])
    )


def begin_stop(state: Mapping[str, ProcessRecord]) -> None:
    """SIGTERM every Kafka node of `state` (stack.json's records) at once, before stopping them
    one by one: stopped in turn, the last node's controlled shutdown waits for a controller
    quorum that has gone (STOP_GRACE_S, then SIGKILL); together they finish in seconds."""
    for name, record in state.items():
        if kafka_cluster.is_broker_service(name) and processes.is_alive(record):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)


def stop(record: ProcessRecord) -> None:
    """SIGTERM makes Kafka do a controlled shutdown (flushes logs, writes clean-shutdown files)."""
    processes.stop(record, grace_s=STOP_GRACE_S)
