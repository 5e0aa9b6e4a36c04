"""Waiting for a condition with a generous deadline (never a fixed sleep): the one helper."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = 240) -> Any:
    """The first truthy value of `condition()`, polled every 0.2 s; AssertionError at the end."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
