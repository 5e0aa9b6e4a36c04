"""The Quix Streams app as the Quix runners (quix_window.py, quix_correlation.py) both build it.
The clock, the report line and the results file, which every peer's runner shares, are in
peer_common.py. The runners run as scripts in the Quix venv, without the project, so they import
both modules by their bare names (their own folder is first on sys.path). Imports nothing from
the project either.
"""

from __future__ import annotations

import tempfile
import uuid

from quixstreams import Application


def new_app(bootstrap: str) -> Application:
    """Quix defaults, reading from the earliest offset with a fresh group and state dir."""
    return Application(
        broker_address=bootstrap,
        consumer_group=f"quix-bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="quix-bench-"),
        loglevel="WARNING",
    )
