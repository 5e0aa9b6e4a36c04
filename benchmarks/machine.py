"""What a run ran on: CPU, cores, memory, OS and the versions of everything measured."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.peers import peer_version


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _os() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def machine() -> dict[str, Any]:
    import os

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": _os(),
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
    }


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def versions(quix_python: Path | None, bytewax_python: Path | None = None) -> dict[str, str]:
    from cluster.stack.kafka_broker import kafka_version

    found = {
        "Python": platform.python_version(),
        "Apache Kafka": kafka_version(),
        "Ray": _package("ray"),
        "Polars": _package("polars"),
        "confluent-kafka": _package("confluent-kafka"),
    }
    if quix_python is not None:
        found["Quix Streams"] = peer_version(quix_python, "quixstreams")
    try:
        redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        found["Redis"] = next(
            (w.split("=")[1] for w in redis.stdout.split() if w.startswith("v=")), "unknown"
        )
    except OSError:
        found["Redis"] = "unknown"
    if bytewax_python is not None:
        found["Bytewax"] = peer_version(bytewax_python, "bytewax")
    return found
