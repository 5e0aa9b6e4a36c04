"""CPU seconds and peak RSS of processes, from /proc (Linux): no psutil needed, and it works for
processes we did not start (Ray actor workers, the broker, Redis).

    before = cpu_seconds(pid); ...; used = cpu_seconds(pid) - before
    peak_rss_bytes(pid)   # VmHWM: the high-water mark since the process started
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of pid (all its threads) so far; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM of pid, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def self_usage() -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of this process: what runner subprocesses report. The peak
    is VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, peak_rss_bytes(os.getpid()) or 0


class CpuMeter:
    """CPU used by a set of pids since each was first seen (pids may be added while running)."""

    def __init__(self) -> None:
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def watch(self, pid: int) -> None:
        if pid not in self._start:
            now = cpu_seconds(pid)
            if now is not None:
                self._start[pid] = self._last[pid] = now

    def sample(self) -> None:
        for pid in self._start:
            now = cpu_seconds(pid)
            if now is not None:
                self._last[pid] = now

    @property
    def pids(self) -> list[int]:
        return list(self._start)

    def used(self) -> float:
        self.sample()
        return sum(self._last[p] - self._start[p] for p in self._start)

    def peak_rss(self) -> int:
        """Sum of the watched processes' peaks (they run side by side)."""
        return sum(peak_rss_bytes(p) or 0 for p in self._start)
