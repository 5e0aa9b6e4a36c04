"""The real API app with unreachable services (Kafka and Redis on port 1 refuse connections) and
an admin token of tenant `t`: for tests of what the app answers before, or instead of, calling
a service."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cluster.security import auth_config_from, mint_token
from cluster.settings import Settings
from serve.app import create_app


def offline_client(**settings: Any) -> TestClient:
    config = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        redis_url="redis://127.0.0.1:1/0",
        jwt_secret_key="k" * 32,
        **settings,
    )
    token = mint_token(auth_config_from(config), "t", "admin", "tester", ttl_s=600)
    return TestClient(
        create_app(config),
        raise_server_exceptions=False,
        headers={"Authorization": f"Bearer {token}"},
    )
