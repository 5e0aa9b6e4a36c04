"""What the Quix Streams runners (quix_window.py, quix_correlation.py) share: the app as both build
it, the clock and the JSON report line. They run as scripts in the Quix venv, without the project,
so they import this module by its bare name (their own folder is first on sys.path). Imports
nothing from the project either.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from typing import Any

from quixstreams import Application


def usage() -> tuple[float, int]:
    """CPU seconds and VmHWM (ru_maxrss would include the parent's peak, carried over exec)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return ru.ru_utime + ru.ru_stime, peak * 1024


def new_app(bootstrap: str) -> Application:
    """Quix defaults, reading from the earliest offset with a fresh group and state dir."""
    return Application(
        broker_address=bootstrap,
        consumer_group=f"quix-bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="quix-bench-"),
        loglevel="WARNING",
    )


class Clock:
    """One run's clock, started before the app is built: records seen, the time of the first
    one, and the time the work was done (or, if it never is, when the app stopped)."""

    def __init__(self) -> None:
        self.cpu0, _ = usage()
        self.t0 = time.perf_counter()
        self.events = 0
        self.first_s: float | None = None
        self.done_s: float | None = None

    def saw_event(self) -> None:
        if self.first_s is None:
            self.first_s = time.perf_counter() - self.t0
        self.events += 1

    def finish(self) -> bool:
        """Stops the clock; True only the first time (the caller then stops the app)."""
        if self.done_s is not None:
            return False
        self.done_s = time.perf_counter() - self.t0
        return True

    def report(self, **counts: int) -> None:
        """Prints the JSON line benchmarks.scenario.Context.run_runner parses."""
        seconds = self.done_s if self.done_s is not None else time.perf_counter() - self.t0
        cpu, peak = usage()
        line = {
            "events": self.events,
            "seconds": seconds,
            "cpu_s": cpu - self.cpu0,
            "peak_rss_bytes": peak,
            "first_record_s": self.first_s,
            **counts,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def write_results(path: str | None, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON document a line, if the caller asked for the results."""
    if path:
        with open(path, "w") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
