"""Peers in their own environments: Quix Streams pins confluent-kafka < 2.13 and pydantic < 2.14,
which would downgrade the product's, so it gets a venv of its own under the cache dir
(ESB_CACHE_DIR), made once per quix-requirements.txt and reused."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("quix-requirements.txt")


def quix_python(cache_dir: Path, progress: Callable[[str], None]) -> Path | None:
    """The Quix venv's python, created on first use; None (with a message) if that fails."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = cache_dir.expanduser() / "bench" / f"quix-{digest}"
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if marker.exists():
        return python
    progress(f"installing Quix Streams into {venv} (once) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
            check=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        progress(f"Quix Streams could not be installed ({exc}); it is left out of this run")
        return None
    marker.touch()
    return python
