"""Cancelling a subscription is prompt and frees its consumer group on the broker, for webhook
and pull subscriptions alike (README: the consumer group id is free again)."""

from __future__ import annotations

import httpx
import pytest

from cluster.kafka.clients import admin_client
from cluster.settings import Settings
from tests.integration.conftest import create_stream
from tests.integration.subscription_helpers import (
    TENANT,
    Receiver,
    cancel,
    events,
    publish,
    status,
    subscribe,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def _groups(stack: Settings) -> set[str]:
    admin = admin_client(stack)
    return {g.group_id for g in admin.list_consumer_groups().result(30).valid}


@pytest.mark.parametrize("target", ["webhook", "pull"])
def test_cancel_is_prompt_and_frees_the_group(
    stack: Settings, http: httpx.Client, receiver: Receiver, unique: str, target: str
) -> None:
    stream = create_stream(http, TENANT, f"cancel-{target}-{unique}")
    config = {"webhook_url": receiver.url} if target == "webhook" else {}
    sub = subscribe(http, stream, **config)
    assert (sub["secret"] or "").startswith("whsec_") == (target == "webhook")  # pull: none
    publish(http, stream["stream_id"], events(3, f"c{unique}"))
    if target == "webhook":
        wait_for(lambda: status(http, sub)["counts"]["delivered"] == 3, "deliveries")
        assert sub["group_id"] in _groups(stack)
    cancel(http, sub)  # prompt: the group is deleted in the background
    wait_for(lambda: sub["group_id"] not in _groups(stack), "the group deleted", deadline_s=90)
