"""The README's webhook recipe on the real stack: `esb webhooks listen` receives a subscription's
deliveries and checks their signatures with the secret the subscription was created with."""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx
import pytest

from cluster.settings import Settings
from cluster.stack.processes import free_ports
from tests.integration.conftest import create_stream
from tests.integration.subscription_helpers import TENANT, events, publish, subscribe
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def test_esb_webhooks_listen_verifies_deliveries(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    [port] = free_ports(1)
    stream = create_stream(http, TENANT, f"listen-{unique}")
    sub = subscribe(http, stream, webhook_url=f"http://127.0.0.1:{port}/hook")
    listen = [sys.executable, "-m", "cluster.cli.main", "webhooks", "listen", "--port", str(port)]
    receiver = subprocess.Popen(
        [*listen, "--secret", sub["secret"]], stdout=subprocess.PIPE, text=True
    )
    out, lines = receiver.stdout, list[str]()
    assert out is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")))
    reader.start()
    try:
        sent = publish(http, stream["stream_id"], events(3, f"l{unique}"))
        # deliveries retry until the receiver listens
        wait_for(lambda: len(lines) >= 3, "three lines from the receiver", deadline_s=120)
    finally:
        receiver.terminate()
        receiver.wait(30)
        reader.join(30)
    deliveries = [line.split() for line in lines if len(line.split()) == 4]  # not stray output
    received = {fields[2]: fields[3] for fields in deliveries}
    assert received == {r["event_id"]: "verified" for r in sent}, lines
