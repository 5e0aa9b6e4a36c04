"""Webhook delivery: Standard Webhooks signatures, the SSRF guard, and a pooled HTTP sender.

Signing (https://www.standardwebhooks.com): every request carries `webhook-id` (the same on every
redelivery of an event: the receiver's idempotency key), `webhook-timestamp` (seconds, this
attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">`, keyed
by the subscription's secret `whsec_<base64 key>`.

>>> secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
>>> headers = signed_headers(secret, "evt-1", b'{"a":1}', timestamp=1700000000)
>>> verify(secret, headers, b'{"a":1}', now=1700000010)
True
>>> verify(secret, headers, b'{"a":2}', now=1700000010)
False
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from cluster.errors import InvalidInput

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300
USER_AGENT = "event-streaming-bus-webhooks/0.1"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, webhook_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature(secret, webhook_id, ts, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver runs: the signature matches and the timestamp is recent."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        webhook_id, ts = lower["webhook-id"], int(lower["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = signature(secret, webhook_id, ts, body).split(",", 1)[1]
    offered = [s.split(",", 1)[1] for s in lower.get("webhook-signature", "").split() if "," in s]
    return any(hmac.compare_digest(expected, s) for s in offered)


# --- SSRF guard ---------------------------------------------------------------------------------


def address_refused(address: str) -> str | None:
    """Why a webhook may not reach this IP address, or None when it may."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for flag, why in (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_private, "private"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_reserved, "reserved"),
    ):
        if flag:
            return why
    return None


def parse_webhook_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL without credentials; InvalidInput otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise InvalidInput(f"webhook_url {url!r} does not parse: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook_url must be an http(s) URL with a host, not {url!r}")
    if parts.username or parts.password:
        raise InvalidInput("webhook_url must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput(f"webhook_url has an invalid port: {url!r}") from None
    return parts.hostname, port


def _refusal(host: str, addresses: list[str]) -> str | None:
    for address in addresses:
        why = address_refused(address)
        if why is not None:
            return (
                f"webhook host {host!r} resolves to {address} ({why}); such addresses are "
                "refused unless the API was started with ALLOW_PRIVATE_WEBHOOKS=true "
                "(e.g. `ALLOW_PRIVATE_WEBHOOKS=true make run`)"
            )
    return None


def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """At creation: the URL is well formed and (unless allowed) resolves only to public
    addresses. Blocking (DNS); call through a thread from async code."""
    host, port = parse_webhook_url(url)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:  # private or not: deliveries could only dead-letter
        raise InvalidInput(f"webhook host {host!r} does not resolve: {exc}") from None
    if allow_private:
        return
    why = _refusal(host, [str(info[4][0]) for info in infos])
    if why is not None:
        raise InvalidInput(why)


# --- Sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One attempt's result. `gone`: the receiver answered 410 (disable the subscription)."""

    ok: bool
    status: int | None = None
    error: str | None = None
    gone: bool = False


class WebhookSender:
    """One pooled async client per dispatcher: keep-alive connections, timeouts, no redirects,
    no proxies from the environment. The SSRF guard runs again before each request (the host's
    addresses may have changed since creation), cached for `dns_ttl_s`."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout_s: float = 10.0,
        max_connections: int = 64,
        dns_ttl_s: float = 30.0,
    ) -> None:
        self._allow_private = allow_private
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=16),
            headers={"user-agent": USER_AGENT},
        )
        self._dns_ttl_s = dns_ttl_s
        self._checked: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def _guard(self, url: str) -> str | None:
        if self._allow_private:
            return None
        host, port = parse_webhook_url(url)
        cached = self._checked.get((host, port))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, proto=socket.IPPROTO_TCP
            )
            why = _refusal(host, [str(info[4][0]) for info in infos])
        except socket.gaierror as exc:
            why = f"webhook host {host!r} does not resolve: {exc}"
        self._checked[(host, port)] = (time.monotonic() + self._dns_ttl_s, why)
        return why

    async def send(self, url: str, secret: str, webhook_id: str, body: bytes) -> Outcome:
        try:
            refused = await self._guard(url)
        except InvalidInput as exc:
            refused = exc.detail
        if refused is not None:
            return Outcome(ok=False, error=refused)
        headers = {
            **signed_headers(secret, webhook_id, body),
            "content-type": "application/cloudevents+json",
        }
        try:
            answer = await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return Outcome(ok=False, error=f"timed out: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= answer.status_code < 300:
            return Outcome(ok=True, status=answer.status_code)
        if answer.status_code == 410:
            return Outcome(ok=False, status=410, error="410 Gone: subscription disabled", gone=True)
        if answer.is_redirect:
            where = answer.headers.get("location", "?")
            return Outcome(
                ok=False,
                status=answer.status_code,
                error=f"HTTP {answer.status_code} redirect to {where} (redirects are not followed)",
            )
        return Outcome(
            ok=False,
            status=answer.status_code,
            error=f"HTTP {answer.status_code}: {answer.text[:200]}",
        )

    async def close(self) -> None:
        await self._client.aclose()
