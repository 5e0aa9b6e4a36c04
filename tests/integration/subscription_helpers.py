"""Helpers for the subscription tests (test_subscriptions_*.py, test_encryption_subscriptions.py):
a webhook receiver on 127.0.0.1, and the HTTP calls the tests make in tenant TENANT."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from cluster import naming

TENANT = "subs"


@dataclass
class Hit:
    at: float
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """A webhook receiver: `respond(webhook_id, nth attempt)` picks the status; `on_request`
    runs before answering (the kill tests SIGKILL the dispatcher there)."""

    def __init__(self, respond: Callable[[str, int], int] = lambda _id, _n: 200) -> None:
        self.respond = respond
        self.on_request: Callable[[str, int], None] | None = None
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                wid = self.headers.get("webhook-id", "")
                with receiver.lock:
                    n = 1 + sum(h.webhook_id == wid for h in receiver.hits)
                    status = receiver.respond(wid, n)
                    receiver.hits.append(
                        Hit(time.monotonic(), wid, dict(self.headers.items()), body, status)
                    )
                if receiver.on_request is not None:
                    receiver.on_request(wid, n)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def by_id(self) -> dict[str, list[Hit]]:
        with self.lock:
            found: dict[str, list[Hit]] = defaultdict(list)
            for h in self.hits:
                found[h.webhook_id].append(h)
            return found

    def delivered(self) -> Counter[str]:
        with self.lock:
            return Counter(h.webhook_id for h in self.hits if 200 <= h.status < 300)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def events(n: int, prefix: str, types: list[str] | None = None, keys: int = 6) -> list[dict]:
    return [
        {
            "event_type": (types or ["user.created"])[i % len(types or ["x"])],
            "source_capability": "tests",
            "aggregate_id": f"{prefix}-k{i % keys}",
            "aggregate_type": "User",
            "event_id": f"{prefix}-{i}",
            "payload": {"seq": i},
        }
        for i in range(n)
    ]


def publish(http: httpx.Client, stream_id: str, batch: list[dict]) -> list[dict]:
    who = {"stream_id": stream_id, "tenant_id": TENANT, "user_id": "t"}
    answer = http.post("/api/v1/events/batch", json={**who, "events": batch})
    assert answer.status_code == 200, answer.text[:300]
    receipts: list[dict] = answer.json()["events"]
    return receipts


def subscribe(http: httpx.Client, stream: dict, **config: Any) -> dict[str, Any]:
    body = {
        "tenant_id": TENANT,
        "subscription_name": "test",
        "stream_id": stream["stream_id"],
        "consumer_group_id": f"g-{uuid.uuid4().hex[:8]}",
        "start_position": "earliest",
        **config,
    }
    answer = http.post("/api/v1/subscriptions", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def status(http: httpx.Client, sub: dict) -> dict[str, Any]:
    found: dict[str, Any] = http.get(
        f"/api/v1/subscriptions/{sub['subscription_id']}/status"
    ).json()
    return found


def cancel(http: httpx.Client, sub: dict) -> None:
    answer = http.delete(f"/api/v1/subscriptions/{sub['subscription_id']}")
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled"


def _pid(ray: Any, sub: dict) -> int | None:
    try:
        actor = ray.get_actor(naming.dispatcher_name(sub["subscription_id"], 0), namespace="esb")
        return int(ray.get(actor.pid.remote(), timeout=10))
    except Exception:
        return None
