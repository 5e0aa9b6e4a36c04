"""`esb webhooks listen`: a local webhook receiver that checks each delivery's Standard Webhooks
signature and prints one line per event, for trying subscriptions on one machine (the API must
run with ALLOW_PRIVATE_WEBHOOKS=true to deliver to 127.0.0.1).

It answers 204 to a delivery whose signature verifies (or to any, without --secret) and 401 to
one that does not, which the bus retries and finally dead-letters. Each line is:

    <webhook-id> <event type> <event id> verified|unsigned|REJECTED
"""

from __future__ import annotations

import argparse
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

import orjson

from cluster.security.webhooks import verify
from cluster.settings import Settings


def register(subparsers: Any) -> None:
    webhooks = subparsers.add_parser("webhooks", help="a local receiver for webhook deliveries")
    commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    listen = commands.add_parser(
        "listen",
        help="receive deliveries on this machine, checking their signatures",
        description="Print each webhook delivery; with --secret, refuse unsigned ones (401).",
    )
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, default=9000)
    listen.add_argument("--secret", help="the subscription's secret (whsec_...), from its creation")


def execute(args: argparse.Namespace, settings: Settings) -> int:
    server = receiver(args.host, args.port, args.secret, sys.stdout)
    print(
        f"[esb] receiving webhooks on http://{args.host}:{server.server_port}/ (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def receiver(host: str, port: int, secret: str | None, out: TextIO) -> ThreadingHTTPServer:
    """A server (not yet serving) that checks and prints deliveries to `out`."""
    printing = threading.Lock()  # one handler thread per delivery: whole lines, never interleaved

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = dict(self.headers.items())
            ok = secret is None or verify(secret, headers, body)
            try:
                event = orjson.loads(body)
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                event = {}
            verdict = "unsigned" if secret is None else "verified" if ok else "REJECTED"
            line = f"{headers.get('webhook-id')} {event.get('type')} {event.get('id')} {verdict}"
            with printing:
                print(line, file=out, flush=True)
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per delivery is printed above; no access log

    return ThreadingHTTPServer((host, port), Handler)
