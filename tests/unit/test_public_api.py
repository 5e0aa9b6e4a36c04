"""The SDK's public surface is exactly what `__all__` says, and the cluster config is valid."""

from __future__ import annotations

from pathlib import Path

import yaml

import event_streaming_bus

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_all() -> None:
    public = {name for name in dir(event_streaming_bus) if not name.startswith("_")}
    assert public == set(event_streaming_bus.__all__)
    for name in (
        "EventStreamingService",
        "EventPublishingService",
        "EventConsumptionService",
        "StreamConfig",
        "EventConfig",
    ):
        assert name in event_streaming_bus.__all__


def test_ray_cluster_yaml_passes_rays_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((ROOT / "ray-cluster.yaml").read_text()))
    validate_config(config)
    assert {"ray.head.default", "ray.worker.default"} <= set(config["available_node_types"])
    assert any("pip install" in c and "event-streaming-bus" in c for c in config["setup_commands"])
