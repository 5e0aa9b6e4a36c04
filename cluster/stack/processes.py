"""Spawning, probing and stopping the local stack's processes, shared by its three services.

Every service runs in its own session (``start_new_session=True``), so it survives the shell that
ran ``esb up`` and stopping it never touches anything we did not start: we signal only the process
group and session whose leader is the pid we recorded, and check that pid's start time first so a
recycled pid is never mistaken for ours.

>>> port = free_port()
>>> port_in_use(port)
False
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.errors import StackError

Progress = Callable[[str], None]

# Popen objects of the children this process started, so they are reaped (no zombies, no
# "subprocess still running" warnings) when they exit while we are still alive (tests, `esb up`).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_apt_updated = False


@dataclass(frozen=True)
class ProcessRecord:
    """What the state file remembers about one process we started."""

    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells our process from a recycled pid
    address: str
    log_path: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            address=str(data["address"]),
            log_path=str(data["log_path"]),
            extra=dict(data.get("extra", {})),
        )


def say(progress: Progress, message: str) -> None:
    """Every progress line carries the same prefix, so `esb up` output is easy to scan."""
    progress(f"[esb] {message}")


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on; None when the pid does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot, None when it does not exist."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else None


def _reap(pid: int) -> None:
    """Collect the exit status of a child of ours, so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def is_alive(record: ProcessRecord) -> bool:
    """True while the recorded process runs (not a zombie, and not a recycled pid)."""
    _reap(record.pid)
    stat = _proc_stat(record.pid)
    return stat is not None and stat[0] not in ("Z", "X") and int(stat[19]) == record.start_ticks


def session_members(sid: int) -> list[int]:
    """Live pids in session sid: what is left of a service once its leader is gone."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None and stat[0] not in ("Z", "X") and int(stat[3]) == sid:
            members.append(int(entry.name))
    return members


def spawn(
    cmd: Sequence[str],
    *,
    address: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ProcessRecord:
    """Start cmd in a new session, stdout and stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN[child.pid] = child
    ticks = start_ticks(child.pid)
    return ProcessRecord(
        pid=child.pid,
        start_ticks=ticks if ticks is not None else -1,
        address=address,
        log_path=str(log_path),
        extra=dict(extra or {}),
    )


def owned_pids(record: ProcessRecord) -> list[int]:
    """Live pids of the session record.pid leads: the service and everything it spawned.

    When a different process now holds record.pid (other start time), nothing is ours. When the
    pid is gone, members left in its session are still ours: Linux keeps a pid allocated while it
    names a live session, so it cannot have been handed to someone else meanwhile.
    """
    _reap(record.pid)
    stat = _proc_stat(record.pid)
    if stat is not None and int(stat[19]) != record.start_ticks:
        return []
    return session_members(record.pid)


def _signal_all(record: ProcessRecord, sig: signal.Signals) -> None:
    for pid in owned_pids(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop(record: ProcessRecord, *, grace_s: float) -> None:
    """SIGTERM the leader and give it grace_s to shut its own children down in order (Ray's
    `ray start` does: raylet, GCS, then the rest); then SIGTERM whatever is left of its session
    (process group and stragglers that changed group), and SIGKILL after a few more seconds."""
    if not owned_pids(record):
        return
    if is_alive(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
        if wait_for(lambda: not owned_pids(record), timeout_s=grace_s):
            return
    _signal_all(record, signal.SIGTERM)
    if wait_for(lambda: not owned_pids(record), timeout_s=5.0):
        return
    _signal_all(record, signal.SIGKILL)
    wait_for(lambda: not owned_pids(record), timeout_s=10.0)


def wait_for(check: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll check until it is true or timeout_s passes; returns its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def log_tail(path: Path | str, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def failure(what: str, log_path: Path | str, hint: str) -> StackError:
    """A StackError naming what failed, the tail of its log and how to fix it."""
    return StackError(
        f"{what}\n--- last lines of {log_path} ---\n{log_tail(log_path)}\n---\n{hint}"
    )


def wait_ready(
    label: str,
    probe: Callable[[], bool],
    *,
    record: ProcessRecord,
    timeout_s: float,
    progress: Progress,
    hint: str,
    started_at: float,
) -> float:
    """Wait until probe() is true; fail early if the process exits. Returns seconds since start."""
    next_note = time.monotonic() + 10.0
    deadline = started_at + timeout_s
    while True:
        if probe():
            elapsed = time.monotonic() - started_at
            say(progress, f"{label} ready in {elapsed:.1f}s (pid {record.pid})")
            return elapsed
        if not is_alive(record):
            raise failure(f"{label} exited while starting.", record.log_path, hint)
        now = time.monotonic()
        if now >= deadline:
            raise failure(f"{label} was not ready after {timeout_s:.0f}s.", record.log_path, hint)
        if now >= next_note:
            say(progress, f"still waiting for {label} ({now - started_at:.0f}s) ...")
            next_note = now + 10.0
        time.sleep(0.25)


def tcp_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when port cannot be bound on host (someone listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the OS considers free right now: every socket stays bound until
    all are chosen, so two calls in a row cannot hand out the same port."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


# Ports handed out by port_run in this process: a run chosen for a stack whose services are
# not all listening yet (or never listen, like an OTLP endpoint) is not handed out twice.
_RUNS_HANDED_OUT: set[int] = set()


def port_run(count: int, first: int = 21_000, last: int = 30_000) -> int:
    """The first of `count` consecutive free ports, for a stack whose services must get their
    port back when restarted (Redis, Kafka nodes, the Ray head, the API).

    Not free_ports(): those come from the ephemeral range (ip_local_port_range, 32768-60999 by
    default), where any process's bind to port 0 (Ray's servers, a new Serve replica) or a
    connection's source port may take a port while its service is down, so the restart finds
    it in use. This window is below that range and clear of Ray's worker ports (10002-19999)
    and the runs of Serve ports ray_head.serve_env takes from 30000-32767.

    >>> first = port_run(3)
    >>> first < 30_000 and not any(port_in_use(p) for p in range(first, first + 3))
    True
    """
    span = last - first
    base = first + (os.getpid() * 37) % span  # two processes (test sessions) start apart
    scanned = 0
    while scanned < span:
        if base + count > last:  # wrap around to the window's start
            scanned, base = scanned + last - base, first
            continue
        run = range(base, base + count)
        taken = next((p for p in run if p in _RUNS_HANDED_OUT or port_in_use(p)), None)
        if taken is None:
            _RUNS_HANDED_OUT.update(run)
            return base
        scanned, base = scanned + taken + 1 - base, taken + 1
    raise StackError(f"no {count} consecutive free ports in {first}..{last}")


def require_free_ports(label: str, ports: Mapping[str, int], hint: str) -> None:
    """Fail before spawning when a port is taken, instead of a cryptic bind error in a log."""
    taken = [f"{name}={port}" for name, port in ports.items() if port_in_use(port)]
    if taken:
        raise StackError(
            f"Cannot start {label}: port already in use on 127.0.0.1 ({', '.join(taken)}). {hint}"
        )


def require_executable(name: str, apt_package: str, progress: Progress) -> str:
    """Path of executable name; installed from Debian's apt_package when we are root."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0:
        raise StackError(
            f"`{name}` is not installed. Install it with `sudo apt-get install -y {apt_package}` "
            "(or your OS's package for it), then run again."
        )
    global _apt_updated
    if not _apt_updated:
        _run_streaming(["apt-get", "update"], progress)
        _apt_updated = True
    _run_streaming(["apt-get", "install", "-y", apt_package], progress)
    found = shutil.which(name)
    if not found:
        raise StackError(f"`apt-get install {apt_package}` ran but `{name}` is still not on PATH.")
    return found


def _run_streaming(cmd: Sequence[str], progress: Progress) -> None:
    """Run a (slow) installer command, passing each output line to progress."""
    say(progress, f"running {' '.join(cmd)} ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    tail: list[str] = []
    with subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            progress(f"      {line.rstrip()}")
            tail = [*tail[-29:], line.rstrip()]
    if proc.returncode != 0:
        joined = "\n".join(tail)
        raise StackError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{joined}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on path, so two `esb up` (or two test workers) do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
