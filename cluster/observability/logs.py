"""Log lines of the bus: LOG_FORMAT=json (one JSON object a line) or text, at LOG_LEVEL, the same
in API replicas and in actors (each calls :func:`configure_logging` once).

One logger per package, under `event_streaming_bus.` (:func:`get_logger`): publishing,
subscriptions, pipelines, api, ...; the modules' own `cluster.*`, `serve.*`, `actors.*` and
`esb.*` loggers get the same handler. A JSON line always has `timestamp`, `level`, `logger` and
`message`, and `event_id`, `stream_id`, `tenant_id`, `duration_ms`, `trace_id` (or any other
`extra=`) when the call gives them.

>>> import io
>>> out = io.StringIO()
>>> configure_logging("json", "INFO", stream=out)
>>> get_logger("publishing").info("published", extra={"stream_id": "s1", "duration_ms": 1.5})
>>> line = json.loads(out.getvalue())
>>> line["logger"], line["message"], line["stream_id"], line["duration_ms"]
('event_streaming_bus.publishing', 'published', 's1', 1.5)
>>> reset_logging()
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

ROOT = "event_streaming_bus"
# The other loggers the bus's modules use (logging.getLogger(__name__) and "esb.dispatcher").
PACKAGE_LOGGERS = (ROOT, "cluster", "serve", "actors", "pipelines", "esb")
# What a LogRecord has anyway: everything else on it came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def get_logger(package: str) -> logging.Logger:
    """`event_streaming_bus.<package>`, e.g. get_logger("publishing")."""
    return logging.getLogger(f"{ROOT}.{package}")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(log_format: str, level: str, stream: IO[str] | None = None) -> None:
    """One handler on each of the bus's package loggers (replacing the one set before), so
    Ray's and other libraries' loggers keep their own format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("esb")
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    for name in PACKAGE_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "esb"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False  # not twice through a root handler (basicConfig)


def reset_logging() -> None:
    """Undo :func:`configure_logging` (tests)."""
    for name in PACKAGE_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if h.get_name() != "esb"]
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
