"""The registry's replay: the compacted topic's latest value per key becomes the Redis cache
(versions per subject, schemas by id, fingerprints, configs, event types), tombstones drop
what they name, and next-id is raised to the highest id seen."""

from __future__ import annotations

from typing import Any

import orjson

from cluster import naming
from cluster.stores.schemas import NEXT_ID, _cache_commands, _version_key
from pipelines.schemas import parse_schema


def _value(schema_id: int, text: str, deleted: bool = False) -> dict[str, Any]:
    return {"id": schema_id, "schema_type": "JSON", "schema": text, "deleted": deleted}


def test_replay_rebuilds_the_cache_from_the_latest_records() -> None:
    text = parse_schema("JSON", {"type": "string"}).canonical
    other = parse_schema("JSON", {"type": "integer"}).canonical
    latest: dict[bytes, Any] = {
        _version_key("acme", "orders", 1): _value(4, text, deleted=True),
        _version_key("acme", "orders", 2): _value(7, other),
        _version_key("acme", "gone", 1): None,  # permanently deleted
        orjson.dumps({"kind": "config", "tenant": "acme", "subject": ""}): {
            "compatibility": "FULL"
        },
        orjson.dumps({"kind": "event-type", "tenant": "acme", "subject": "orders"}): {
            "event_type": "order.created"
        },
    }
    commands = _cache_commands(latest)
    subjects = naming.registry_tenant_key("acme", "subjects")
    versions = [args for name, args in commands if name == "hset" and args[0] == subjects]
    assert versions == [
        (
            subjects,
            "orders",
            orjson.dumps(
                [
                    {"version": 1, "id": 4, "deleted": True},
                    {"version": 2, "id": 7, "deleted": False},
                ]
            ),
        )
    ]
    sets = {args[0] for name, args in commands if name == "set"}
    assert sets == {naming.registry_key("schema", 4), naming.registry_key("schema", 7)}
    configs = [args for name, args in commands if args[0].endswith(":config")]
    assert configs == [(naming.registry_tenant_key("acme", "config"), "", "FULL")]
    kinds = [args for name, args in commands if args[0].endswith(":event-types")]
    assert kinds == [(naming.registry_tenant_key("acme", "event-types"), "orders", "order.created")]
    assert commands[-1][0] == "eval" and commands[-1][1][2:] == (NEXT_ID, 7)
