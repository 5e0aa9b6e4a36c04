"""The front door as a user meets it: `esb up`, `esb status`, a stream, an event, `esb down`,
as separate processes on free ports with their own state dir."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Esb, esb_cli, stack_env

pytestmark = pytest.mark.integration


def bearer(esb: Esb, role: str) -> dict[str, str]:
    """An Authorization header with a token from `esb tokens create` (signed with the stack's
    generated secret)."""
    made = esb("tokens", "create", "--tenant", "e2e", "--role", role)
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


def ray_nodes(dashboard_port: str, state_dir: Path) -> list[dict[str, Any]]:
    """The nodes Ray's state API lists (what `ray list nodes` shows), with the stack's Ray token
    when it runs in token mode."""
    token = state_dir / "secrets" / "ray_token"
    auth = {"Authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}
    url = f"http://127.0.0.1:{dashboard_port}/api/v0/nodes"
    answer = httpx.get(url, timeout=60, headers=auth)
    assert answer.status_code == 200, answer.text
    nodes: list[dict[str, Any]] = answer.json()["data"]["result"]["result"]
    return nodes


def test_esb_up_status_apply_publish_down(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    api = env["API_PORT"]
    esb = esb_cli(env)

    up = esb("up", "--ray-workers", "1")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{api}/docs" in up.stdout
        status = esb("status").stdout
        for service in ("kafka", "redis", "ray", "ray-worker-1", "api"):
            assert any(
                line.startswith(f"{service} ") and "state=running" in line
                for line in status.splitlines()
            ), status
        nodes = ray_nodes(env["RAY_DASHBOARD_PORT"], tmp_path / "state")
        assert sorted((n["is_head_node"], n["state"]) for n in nodes) == [
            (False, "ALIVE"),
            (True, "ALIVE"),
        ], nodes

        spec = tmp_path / "streams.yaml"
        spec.write_text(
            textwrap.dedent("""
            tenant_id: e2e
            streams:
              - {stream_name: clicks, topic_name: clicks, source_capability: web}
        """)
        )
        applied = esb("streams", "apply", str(spec))
        assert applied.returncode == 0 and "clicks: created" in applied.stdout, applied.stderr
        stream_id = applied.stdout.split("id ")[1].split(")")[0]

        api_url = f"http://127.0.0.1:{api}"
        publisher, consumer = (bearer(esb, role) for role in ("publisher", "consumer"))
        sent = httpx.post(
            f"{api_url}/api/v1/events",
            timeout=60,
            headers=publisher,
            json={
                "stream_id": stream_id,
                "tenant_id": "e2e",
                "user_id": "u",
                "event_type": "page.viewed",
                "source_capability": "web",
                "aggregate_id": "visitor-1",
                "aggregate_type": "Visitor",
                "payload": {"path": "/"},
            },
        )
        assert sent.status_code == 201, sent.text
        events_url = f"{api_url}/api/v1/streams/{stream_id}/events"
        assert httpx.get(events_url, timeout=60).status_code == 401  # no token
        assert httpx.get(events_url, timeout=60, headers=publisher).status_code == 403
        page = httpx.get(events_url, timeout=60, headers=consumer).json()
        assert [e["event"]["type"] for e in page["events"]] == ["page.viewed"]
    finally:
        down = esb("down")
    assert down.returncode == 0, down.stderr
    after = esb("status").stdout
    assert "state=running" not in after, after
