"""`esb webhooks listen`'s receiver: signed deliveries pass (204), others are refused (401)."""

from __future__ import annotations

import io
import threading

import httpx
import orjson

from cluster.cli.webhooks import receiver
from cluster.security.webhooks import new_secret, signed_headers


def test_receiver_checks_signatures_and_prints_one_line_per_delivery() -> None:
    secret, out = new_secret(), io.StringIO()
    server = receiver("127.0.0.1", 0, secret, out)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        body = orjson.dumps({"id": "e1", "type": "user.created"})
        good = httpx.post(url, content=body, headers=signed_headers(secret, "msg_1", body))
        forged = signed_headers(new_secret(), "msg_2", body)
        bad = httpx.post(url, content=body, headers=forged)
        assert (good.status_code, bad.status_code) == (204, 401)
        assert out.getvalue().splitlines() == [
            "msg_1 user.created e1 verified",
            "msg_2 user.created e1 REJECTED",
        ]
    finally:
        server.shutdown()
        server.server_close()
