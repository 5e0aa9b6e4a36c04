"""A refused WebSocket is accepted and closed with 4000 + the HTTP status and the problem's detail,
read here with a stock client (websockets): a bare HTTP 403 before the handshake says nothing."""

from __future__ import annotations

import httpx
import pytest

from cluster.settings import Settings
from tests.conftest import Mint
from tests.integration.conftest import create_stream, refused

TENANT = "wsrefuse"


@pytest.fixture
def ws(stack: Settings) -> str:
    return stack.api_url.replace("http", "ws", 1)


def test_refusals_say_why(http: httpx.Client, mint: Mint, ws: str, unique: str) -> None:
    stream = create_stream(http, TENANT, f"refuse-{unique}")["stream_id"]
    tail = f"{ws}/ws/events/{stream}"
    consumer = mint(TENANT, "consumer")

    assert "token" in refused(tail, 4401).lower()
    assert refused(f"{tail}?access_token=not-a-jwt", 4401)
    assert "role" in refused(f"{tail}?access_token={mint(TENANT, 'publisher')}", 4403)
    assert "not found" in refused(f"{ws}/ws/events/nope-{unique}?access_token={consumer}", 4404)
    assert "from_time_ms" in refused(f"{tail}?access_token={consumer}&from_time_ms=soon", 4422)
    assert "/ws/events/" in refused(f"{ws}/ws/nowhere?access_token={consumer}", 4404)
    assert refused(f"{ws}/ws/pipelines/p-{unique}?access_token={consumer}", 4404)
    assert refused(f"{ws}/ws/subscriptions/s-{unique}?access_token={consumer}", 4404)
