"""Peers in their own environments, each a venv under the cache dir (ESB_CACHE_DIR) made once per
requirements file and reused: Quix Streams pins confluent-kafka < 2.13 and pydantic < 2.14, which
would downgrade the product's; Bytewax (and its Kafka connector's extras) is kept apart the same
way, so neither peer changes what the product runs on."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
QUIX_REQUIREMENTS = HERE / "quix-requirements.txt"
BYTEWAX_REQUIREMENTS = HERE / "bytewax-requirements.txt"


def venv_dir(name: str, requirements: Path, cache_dir: Path) -> Path:
    """Where `name`'s venv lives: its folder carries a digest of the requirements, so changing
    a pin makes a new one."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    slug = name.lower().split()[0]
    return cache_dir.expanduser() / "bench" / f"{slug}-{digest}"


def ready_python(name: str, requirements: Path, cache_dir: Path) -> Path | None:
    """The python of `name`'s venv if it was made already (never installs anything)."""
    venv = venv_dir(name, requirements, cache_dir)
    return venv / "bin" / "python" if (venv / ".complete").exists() else None


def peer_python(
    name: str, requirements: Path, cache_dir: Path, progress: Callable[[str], None]
) -> Path | None:
    """The python of `name`'s venv (`requirements` installed), created on first use; None
    (with a message) if that fails."""
    ready = ready_python(name, requirements, cache_dir)
    if ready is not None:
        return ready
    venv = venv_dir(name, requirements, cache_dir)
    python = venv / "bin" / "python"
    progress(f"installing {name} into {venv} (once) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
            check=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        progress(f"{name} could not be installed ({exc}); it is left out of this run")
        return None
    (venv / ".complete").touch()
    return python


def quix_python(cache_dir: Path, progress: Callable[[str], None]) -> Path | None:
    """The Quix Streams venv's python (quix-requirements.txt)."""
    return peer_python("Quix Streams", QUIX_REQUIREMENTS, cache_dir, progress)


def bytewax_python(cache_dir: Path, progress: Callable[[str], None]) -> Path | None:
    """The Bytewax venv's python (bytewax-requirements.txt)."""
    return peer_python("Bytewax", BYTEWAX_REQUIREMENTS, cache_dir, progress)


def peer_version(python: Path, distribution: str) -> str:
    """The installed version of `distribution` in a peer's venv ("unknown" if it cannot tell)."""
    probe = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
