"""Webhook signing (Standard Webhooks), the SSRF guard, retry backoff bounds and glob filters:
pure functions, no services."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random

import pytest
from pydantic import ValidationError

from cluster.errors import InvalidInput
from cluster.models.subscriptions import EventFilter, RetryPolicy, SubscriptionConfig
from cluster.security.webhooks import (
    address_refused,
    check_webhook_url,
    new_secret,
    signature,
    signed_headers,
    verify,
)


def config(**changes: object) -> SubscriptionConfig:
    base: dict[str, object] = {
        "subscription_name": "s",
        "stream_id": "events",
        "consumer_group_id": "g",
        "webhook_url": "https://hooks.example.com/in",
    }
    return SubscriptionConfig.model_validate({**base, **changes})


def test_signature_is_standard_webhooks_hmac_over_id_timestamp_body() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    body = b'{"id":"e1"}'
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest())
    assert signature(secret, "msg_1", 1700000000, body) == "v1," + expected.decode()
    headers = signed_headers(secret, "msg_1", body, timestamp=1700000000)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"
    assert verify(secret, headers, body, now=1700000000)


def test_verify_refuses_tampering_other_secrets_and_stale_timestamps() -> None:
    secret, other = new_secret(), new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    headers = signed_headers(secret, "id", b"body", timestamp=1000)
    assert not verify(secret, headers, b"bodY", now=1000)
    assert not verify(other, headers, b"body", now=1000)
    assert not verify(secret, {**headers, "webhook-id": "id2"}, b"body", now=1000)
    assert not verify(secret, headers, b"body", now=1000 + 301)
    assert not verify(secret, {"webhook-id": "id"}, b"body", now=1000)
    # several signatures (key rotation): any one matching is enough
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    assert verify(secret, rotated, b"body", now=1000)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "private"),
        ("224.0.0.1", "multicast"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_ssrf_guard_classifies_addresses(address: str, why: str | None) -> None:
    found = address_refused(address)
    assert (found is None) == (why is None)


def test_ssrf_guard_on_urls() -> None:
    with pytest.raises(InvalidInput, match="loopback"):
        check_webhook_url("http://127.0.0.1:8080/hook", allow_private=False)
    with pytest.raises(InvalidInput, match="link-local"):
        check_webhook_url("http://169.254.169.254/latest/meta-data", allow_private=False)
    with pytest.raises(InvalidInput, match="loopback"):
        check_webhook_url("http://localhost/hook", allow_private=False)
    check_webhook_url("http://127.0.0.1:8080/hook", allow_private=True)
    for bad in ("ftp://example.com/x", "http:///nohost", "https://user:pw@example.com/"):
        with pytest.raises(InvalidInput):
            check_webhook_url(bad, allow_private=True)
    with pytest.raises(InvalidInput, match="does not parse"):
        check_webhook_url("http://[::1", allow_private=True)
    with pytest.raises(InvalidInput, match="ALLOW_PRIVATE_WEBHOOKS=true"):
        check_webhook_url("http://[::1]:9/hook", allow_private=False)
    with pytest.raises(InvalidInput, match="does not resolve"):  # allowed or not: never deliverable
        check_webhook_url("http://hooks.example.invalid/esb", allow_private=True)


def test_backoff_is_full_jitter_within_exponential_bounds() -> None:
    policy = RetryPolicy(initial_backoff_ms=100, max_backoff_ms=1_000, max_attempts=10)
    assert [policy.bound_ms(n) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]
    rng = random.Random(7)
    for attempt in range(1, 10):
        delays = [policy.delay_ms(attempt, rng) for _ in range(500)]
        assert min(delays) >= 0 and max(delays) <= policy.bound_ms(attempt)
        assert max(delays) > 0.8 * policy.bound_ms(attempt)  # the whole range is used
        assert min(delays) < 0.2 * policy.bound_ms(attempt)
    assert RetryPolicy().bound_ms(1000) == RetryPolicy().max_backoff_ms
    with pytest.raises(ValidationError):
        RetryPolicy(initial_backoff_ms=2_000, max_backoff_ms=1_000)


def test_globs_select_exactly_the_matching_event_types() -> None:
    accept = EventFilter(config(event_type_patterns=["user.*", "order.created", "invoice.?aid"]))
    matching = ["user.created", "user.profile.updated", "user.", "order.created", "invoice.paid"]
    other = ["users.created", "user", "order.created.v2", "order.updated", "invoice.unpaid",
             "Invoice.paid", "xuser.created", "invoice.aid"]  # fmt: skip
    assert [t for t in matching + other if accept.matches({"type": t})] == matching
    assert not accept.matches({}) and not accept.matches({"type": 3})
    assert EventFilter(config()).everything and EventFilter(config()).matches({"type": "x"})


def test_aggregate_filters_combine_with_types() -> None:
    accept = EventFilter(
        config(event_type_patterns=["*"], aggregate_ids=["vip-*"], aggregate_types=["User"])
    )
    assert accept.matches({"type": "a", "aggregateid": "vip-1", "aggregatetype": "User"})
    assert not accept.matches({"type": "a", "aggregateid": "vip-1", "aggregatetype": "Order"})
    assert not accept.matches({"type": "a", "aggregateid": "v-1", "aggregatetype": "User"})


def test_config_consistency() -> None:
    with pytest.raises(ValidationError, match="not both"):
        config(forward_to="other")
    with pytest.raises(ValidationError, match="start_offset"):
        config(start_position="offset")
    with pytest.raises(ValidationError, match="start_time_ms"):
        config(start_time_ms=5)
    assert config(webhook_url=None, forward_to="other").target == "kafka"
    assert config(webhook_url=None).target == "pull"
    assert config().target == "webhook"
