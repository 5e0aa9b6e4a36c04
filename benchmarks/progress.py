"""Progress on the terminal: one line per step with the elapsed time of the whole run, and a live
status line (rewritten in place on a TTY, at most every few seconds otherwise) during waits."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO = sys.stderr, quiet_every_s: float = 5.0) -> None:
        self._stream = stream
        self._began = time.monotonic()
        self._tty = stream.isatty()
        self._live = False
        self._last_live = 0.0
        self._quiet_every_s = quiet_every_s

    def _stamp(self) -> str:
        elapsed = int(time.monotonic() - self._began)
        return f"[bench {elapsed // 60:02d}:{elapsed % 60:02d}]"

    def __call__(self, message: str) -> None:
        """A step: printed on its own line (also usable as the stack's progress callback)."""
        self._clear()
        self._stream.write(f"{self._stamp()} {message}\n")
        self._stream.flush()

    def live(self, status: str) -> None:
        """A status that replaces the previous one (throttled when not on a TTY)."""
        now = time.monotonic()
        if self._tty:
            self._stream.write(f"\r\033[K{self._stamp()}   {status}")
            self._live = True
        elif now - self._last_live >= self._quiet_every_s:
            self._stream.write(f"{self._stamp()}   {status}\n")
            self._last_live = now
        else:
            return
        self._stream.flush()

    def _clear(self) -> None:
        if self._live:
            self._stream.write("\r\033[K")
            self._live = False
