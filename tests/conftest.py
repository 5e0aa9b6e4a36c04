"""Fixtures for the whole suite. The real services start only when a test asks for `stack` (the
integration tests do); unit tests never start anything and never initialise Ray.

Services come from the environment when KAFKA_BOOTSTRAP_SERVERS / REDIS_URL / RAY_ADDRESS are set;
otherwise the local stack is started once per session on free ports in a fresh /tmp directory,
and stopped (only what it started) at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.security import auth_config_from, mint_token
from cluster.security.principal import Role
from cluster.settings import Settings
from cluster.stack import local_stack, processes, ray_head

# Tenants with small quotas, for tests/integration/test_quotas.py.
QUOTA_OVERRIDES: dict[str, dict[str, float | int | None]] = {
    "quota-flood": {"events_per_s": 2, "burst_s": 25},  # 50 at once, then 2/s
    "quota-count": {"max_streams": 2, "max_subscriptions": 1},
    "fuzz": {"max_streams": 10, "max_subscriptions": 5},  # schemathesis creates what it can
}
DEFAULT_TENANT = "acme"
ISSUER, AUDIENCE = "esb-tests", "esb-api"


def _test_settings(state_dir: Path) -> Settings:
    """Settings() from the environment, with only the local ports and the state dir replaced."""
    kafka, controller, redis, ray, dashboard, api = processes.free_ports(6)
    return Settings(
        esb_state_dir=state_dir,
        kafka_port=kafka,
        kafka_controller_port=controller,
        redis_port=redis,
        ray_port=ray,
        ray_dashboard_port=dashboard,
        api_port=api,
        allow_private_webhooks=True,  # the webhook tests' receivers listen on 127.0.0.1
        jwt_issuer=ISSUER,  # so the token tests can get them wrong
        jwt_audience=AUDIENCE,
        # Rates unlimited but for the tenants the quota tests flood; counts well above use.
        esb_quota_events_per_s=None,
        esb_quota_bytes_per_s=None,
        esb_quota_max_streams=1000,
        esb_quota_max_subscriptions=1000,
        esb_quota_overrides=QUOTA_OVERRIDES,
    )


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """The running stack's resolved Settings (addresses filled in), for the whole session."""
    state_dir = Path(tempfile.mkdtemp(prefix="esb-test-", dir="/tmp"))
    settings = _test_settings(state_dir)
    try:
        yield local_stack.up(settings, with_api=True)
    finally:
        local_stack.down(settings)
        if request.session.testsfailed:
            print(f"\n[esb] test stack logs kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(ray_head.temp_dir(settings), ignore_errors=True)


@pytest.fixture(scope="session")
def ray_session(stack: Settings) -> Iterator[Any]:
    """This test process as a Ray driver of the stack's cluster (ray imported only here)."""
    os.environ["RAY_AUTH_MODE"] = stack.ray_auth_mode  # drivers must match the head's mode
    import ray

    context = ray.init(
        address=stack.ray_address,
        namespace="esb-tests",
        ignore_reinit_error=True,
        log_to_driver=False,
    )
    yield context
    ray.shutdown()


@pytest.fixture
def unique() -> str:
    """A fresh suffix, so each test has its own streams and topics."""
    return uuid.uuid4().hex[:10]


Mint = Callable[..., str]


@pytest.fixture(scope="session")
def mint(stack: Settings) -> Mint:
    """mint(tenant, role="admin", **grants) -> a bearer token the stack's API accepts."""
    config = auth_config_from(stack)

    def make(tenant: str, role: Role = "admin", ttl_s: int = 3600, **grants: Any) -> str:
        return mint_token(config, tenant, role, f"{role}@{tenant}", ttl_s=ttl_s, **grants)

    return make


@pytest.fixture
def http(stack: Settings, mint: Mint, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """An API client with an admin token of the test module's `TENANT` (default acme)."""
    tenant = getattr(request.module, "TENANT", DEFAULT_TENANT)
    auth = {"Authorization": f"Bearer {mint(tenant)}"}
    with httpx.Client(base_url=stack.api_url, timeout=120, headers=auth) as client:
        yield client
