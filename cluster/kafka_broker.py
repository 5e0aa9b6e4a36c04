"""A single-node Apache Kafka broker in KRaft mode (broker + controller in one JVM) for the local
stack. Its jars come from Maven Central through kafka_dist/pom.xml, fetched once into the cache.

The broker listens on 127.0.0.1 only; data lives in <state_dir>/kafka/data and survives restarts.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from cluster import processes
from cluster.errors import StackError
from cluster.processes import ProcessRecord, Progress, say
from cluster.settings import Settings

LABEL = "Kafka broker"
DIST_DIR = Path(__file__).parent / "kafka_dist"
POM = DIST_DIR / "pom.xml"
LOG4J_CONFIG = DIST_DIR / "log4j2.xml"
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 30.0
_MARKER = ".complete"
_HINT = (
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


def server_properties(settings: Settings, data_dir: Path) -> str:
    """The broker's config: one node that is both broker and controller, loopback only."""
    port, controller = settings.kafka_port, settings.kafka_controller_port
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "default.replication.factor": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _random_cluster_id() -> str:
    """Same format as `kafka-storage.sh random-uuid`: url-safe base64 of 16 random bytes."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like a CLI flag
            return text


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


def format_storage(java: str, libs: Path, config: Path, data_dir: Path, log_path: Path) -> None:
    """`kafka-storage.sh format` once; a formatted dir (meta.properties) is kept as it is."""
    if (data_dir / "meta.properties").exists():
        return
    cmd = [
        *_java_cmd(java, "256m", libs),
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        _random_cluster_id(),
        "--config",
        str(config),
    ]
    with log_path.open("ab") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=120)
    if result.returncode != 0:
        raise processes.failure(f"Formatting Kafka storage in {data_dir} failed.", log_path, _HINT)


def preflight(settings: Settings) -> None:
    """Fail before anything starts when a port we need is taken."""
    processes.require_free_ports(
        LABEL,
        {
            "KAFKA_PORT": settings.kafka_port,
            "KAFKA_CONTROLLER_PORT": settings.kafka_controller_port,
        },
        "Fix: stop what listens there, choose other ports (KAFKA_PORT, KAFKA_CONTROLLER_PORT), "
        "or point KAFKA_BOOTSTRAP_SERVERS at that broker.",
    )


def launch(settings: Settings, progress: Progress) -> ProcessRecord:
    """Fetch jars, write the config, format storage if new, and spawn the broker (not waited)."""
    java = processes.require_executable("java", "openjdk-17-jre-headless", progress)
    libs = ensure_jars(settings, progress)
    home = settings.esb_state_dir.resolve() / "kafka"
    data_dir = home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(server_properties(settings, data_dir))
    log_path = home / "broker.log"
    address = f"127.0.0.1:{settings.kafka_port}"
    say(progress, f"starting {LABEL} on {address} ...")
    format_storage(java, libs, config, data_dir, home / "format.log")
    return processes.spawn(
        [*_java_cmd(java, settings.kafka_heap, libs), "kafka.Kafka", str(config)],
        address=address,
        log_path=log_path,
        cwd=home,
    )


def is_ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when the cluster answers a metadata request with at least one broker."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not processes.tcp_open(host or "127.0.0.1", int(port)):
        return False  # spares librdkafka's connection-refused noise while the JVM boots
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False


def wait(record: ProcessRecord, progress: Progress, started_at: float) -> float:
    return processes.wait_ready(
        LABEL,
        lambda: is_ready(record.address),
        record=record,
        timeout_s=READY_TIMEOUT_S,
        progress=progress,
        hint=_HINT,
        started_at=started_at,
    )


def stop(record: ProcessRecord) -> None:
    """SIGTERM makes Kafka do a controlled shutdown (flushes logs, writes clean-shutdown files)."""
    processes.stop(record, grace_s=STOP_GRACE_S)
