"""JSON log lines: each parses as JSON with the fields the README names."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from cluster.observability.logs import configure_logging, get_logger, reset_logging

FIELDS = {"timestamp", "level", "logger", "message"}


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    yield stream
    reset_logging()  # leave the loggers as other tests expect them


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_every_line_is_json_with_the_fields(out: io.StringIO) -> None:
    get_logger("publishing").info(
        "published %d events",
        3,
        extra={"event_id": "e1", "stream_id": "s1", "tenant_id": "acme", "duration_ms": 2.5},
    )
    logging.getLogger("cluster.services.streams").warning("module logger")
    logging.getLogger("esb.dispatcher").debug("dispatcher logger")
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("subscriptions").exception("failed")
    found = lines(out)
    assert len(found) == 4 and all(set(line) >= FIELDS for line in found)
    first = found[0]
    assert first["logger"] == "event_streaming_bus.publishing"
    assert first["message"] == "published 3 events" and first["level"] == "INFO"
    assert (first["event_id"], first["stream_id"], first["tenant_id"]) == ("e1", "s1", "acme")
    assert first["duration_ms"] == 2.5
    assert str(first["timestamp"]).endswith("+00:00")
    assert found[1]["logger"] == "cluster.services.streams"
    assert "ValueError: boom" in str(found[3]["exception"])


def test_level_and_text_format() -> None:
    stream = io.StringIO()
    configure_logging("text", "WARNING", stream=stream)
    try:
        get_logger("pipelines").info("hidden")
        get_logger("pipelines").warning("shown")
        text = stream.getvalue()
        assert "hidden" not in text and "WARNING event_streaming_bus.pipelines shown" in text
    finally:
        reset_logging()
