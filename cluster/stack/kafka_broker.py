"""A single-node Apache Kafka broker in KRaft mode (broker + controller in one JVM) for the local
stack. Its jars come from Maven Central through kafka_dist/pom.xml, fetched once into the cache.

The broker listens on 127.0.0.1 only; data lives in <state_dir>/kafka/data and survives restarts.
With KAFKA_SSL_PORT set it also listens with TLS there, with a CA and broker certificate made in
<state_dir>/tls (cluster.security.tls); clients trust <state_dir>/tls/ca.pem. PLAINTEXT stays for
the broker's own traffic and the readiness probe.
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

from cluster.errors import StackError
from cluster.kafka.clients import security_config
from cluster.security import tls
from cluster.settings import Settings
from cluster.stack import processes
from cluster.stack.processes import ProcessRecord, Progress, say

LABEL = "Kafka broker"
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


def server_properties(settings: Settings, data_dir: Path, keystore: Path | None = None) -> str:
    """The broker's config: one node that is both broker and controller, loopback only; with a
    keystore (PEM: PKCS#8 key, then the certificate chain), an SSL listener on kafka_ssl_port."""
    port, controller = settings.kafka_port, settings.kafka_controller_port
    listeners = [f"PLAINTEXT://127.0.0.1:{port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    ssl: dict[str, str] = {}
    if keystore is not None and settings.kafka_ssl_port is not None:
        listeners.append(f"SSL://127.0.0.1:{settings.kafka_ssl_port}")
        protocols.append("SSL:SSL")
        # Kafka reads a PEM keystore natively (no JKS, no keystore password: PEM forbids one).
        ssl = {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore)}
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{controller}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(protocols),
        **ssl,
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
        raise processes.failure(f"Formatting Kafka storage in {data_dir} failed.", log_path, HINT)


def preflight(settings: Settings) -> None:
    """Fail before anything starts when a port we need is taken, or SSL has no listener."""
    if settings.kafka_security_protocol.upper() != "PLAINTEXT" and settings.kafka_ssl_port is None:
        raise StackError(
            f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs a TLS listener on "
            "the local broker. Fix: set KAFKA_SSL_PORT (e.g. 9094), or KAFKA_BOOTSTRAP_SERVERS "
            "to a cluster that speaks it."
        )
    ports = {
        "KAFKA_PORT": settings.kafka_port,
        "KAFKA_CONTROLLER_PORT": settings.kafka_controller_port,
    }
    if settings.kafka_ssl_port is not None:
        ports["KAFKA_SSL_PORT"] = settings.kafka_ssl_port
    processes.require_free_ports(
        LABEL,
        ports,
        f"Fix: stop what listens there, choose other ports ({', '.join(ports)}), "
        "or point KAFKA_BOOTSTRAP_SERVERS at that broker.",
    )


def write_keystore(settings: Settings, home: Path) -> tuple[Path, Path]:
    """(keystore, CA certificate): the broker's PEM keystore, from certificates in <state>/tls."""
    files = tls.ensure_certs(settings.esb_state_dir.resolve() / "tls")
    keystore = home / "keystore.pem"
    keystore.touch(mode=0o600)
    keystore.chmod(0o600)
    keystore.write_bytes(files.key.read_bytes() + files.cert.read_bytes())
    return keystore, files.ca_cert


def launch(settings: Settings, progress: Progress) -> ProcessRecord:
    """Fetch jars, write the config, format storage if new, and spawn the broker (not waited)."""
    java = processes.require_executable("java", "openjdk-17-jre-headless", progress)
    libs = ensure_jars(settings, progress)
    home = settings.esb_state_dir.resolve() / "kafka"
    data_dir = home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    keystore, extra = None, {}
    address = f"127.0.0.1:{settings.kafka_port}"
    if settings.kafka_ssl_port is not None:
        keystore, ca = write_keystore(settings, home)
        extra = {"ssl_address": f"127.0.0.1:{settings.kafka_ssl_port}", "ssl_ca": str(ca)}
    config.write_text(server_properties(settings, data_dir, keystore))
    log_path = home / "broker.log"
    tls_note = f" (TLS on {extra['ssl_address']})" if extra else ""
    say(progress, f"starting {LABEL} on {address}{tls_note} ...")
    format_storage(java, libs, config, data_dir, home / "format.log")
    return processes.spawn(
        [*_java_cmd(java, settings.kafka_heap, libs), "kafka.Kafka", str(config)],
        address=address,
        log_path=log_path,
        cwd=home,
        extra=extra,
    )


def is_ready(
    bootstrap: str, security: dict[str, str] | None = None, timeout_s: float = 2.0
) -> bool:
    """True when the cluster answers a metadata request with at least one broker; `security`
    comes from cluster.kafka.clients.security_config (PLAINTEXT when None)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not processes.tcp_open(host or "127.0.0.1", int(port)):
        return False  # spares librdkafka's connection-refused noise while the JVM boots
    config = {"bootstrap.servers": bootstrap, **(security or security_config("PLAINTEXT"))}
    admin = AdminClient({**config, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False


def is_record_ready(record: ProcessRecord) -> bool:
    """The PLAINTEXT listener answers, and the TLS one too (verified with our CA) when there."""

    if not is_ready(record.address):
        return False
    ssl_address = record.extra.get("ssl_address")
    return ssl_address is None or is_ready(
        ssl_address, security_config("SSL", record.extra["ssl_ca"])
    )


def stop(record: ProcessRecord) -> None:
    """SIGTERM makes Kafka do a controlled shutdown (flushes logs, writes clean-shutdown files)."""
    processes.stop(record, grace_s=STOP_GRACE_S)
