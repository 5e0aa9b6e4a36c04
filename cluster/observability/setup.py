"""What every process of the bus does once at start: its log format and level, the component
its process metrics carry, and tracing when TRACING_ENABLED."""

from __future__ import annotations

from cluster.observability import metrics, tracing
from cluster.observability.logs import configure_logging
from cluster.settings import Settings


def setup_process(settings: Settings, component: str) -> None:
    configure_logging(settings.log_format, settings.log_level)
    metrics.set_component(component)
    tracing.configure(settings, component)
