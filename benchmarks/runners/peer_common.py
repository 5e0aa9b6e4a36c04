"""What the peer runners (Quix Streams: quix_window.py, quix_correlation.py; Bytewax:
bytewax_window.py) share: the clock and the JSON report line the harness parses, and the results
file. They run as scripts in their peer's venv, without the project, so they import this module by
its bare name (their own folder is first on sys.path). It imports nothing but the standard
library, so every peer's venv can run it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterable
from typing import Any


def window_arguments(description: str | None) -> argparse.Namespace:
    """The window runners' command line: the pre-loaded topic and how many results to wait for."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expected", type=int, required=True, help="windows to wait for")
    parser.add_argument("--results-out", default=None)
    return parser.parse_args()


def usage() -> tuple[float, int]:
    """CPU seconds and VmHWM (ru_maxrss would include the parent's peak, carried over exec)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return ru.ru_utime + ru.ru_stime, peak * 1024


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
