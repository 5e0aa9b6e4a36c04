"""Schema registry helpers shared by the schema validation and capability tests."""

from __future__ import annotations

from typing import Any

import httpx


def register_event_schema(
    http: httpx.Client,
    name: str,
    event_type: str,
    schema: dict[str, Any],
    schema_type: str = "json",
) -> int:
    """Register `schema` for `event_type` through the seed's /api/v1/schemas; its schema id."""
    body = {"schema_name": name, "event_type": event_type, "schema_type": schema_type}
    answer = http.post("/api/v1/schemas", json={**body, "schema": schema})
    assert answer.status_code == 201, answer.text
    schema_id: int = answer.json()["schema_id"]
    return schema_id
