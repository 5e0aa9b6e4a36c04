"""Settings: the one place that reads environment variables.

Everything else receives a :class:`Settings` (or reads :func:`get_settings`), so tests and the
local stack can build their own without touching the process environment.

>>> Settings(api_port=9000).api_port
9000
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # External services: when set, `esb up` and the test fixtures use them instead of local ones.
    kafka_bootstrap_servers: str | None = None
    redis_url: str | None = None
    ray_address: str | None = None
    # Ray >= 2.59 turns token auth on for local clusters; every process we start gets this value.
    ray_auth_mode: str = "disabled"

    # HTTP API (Ray Serve's proxy).
    api_host: str = "127.0.0.1"
    api_port: int = 8080

    # Local stack (used only when the matching external service is unset).
    esb_state_dir: Path = Path(".esb")
    esb_cache_dir: Path = Path.home() / ".cache" / "esb"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    redis_port: int = 6379
    ray_port: int = 6380
    ray_dashboard_port: int = 8265
    # The Jobs API (the Ray dashboard); defaults to the local head's dashboard port.
    ray_dashboard_url: str | None = None
    ray_num_cpus: int = 2
    ray_object_store_bytes: int = 512 * 1024 * 1024

    # Publishing limits: exceeding either is a 413 with a message.
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch_events: int = 10_000
    # How long a client event_id is remembered for deduplication.
    idempotency_ttl_s: int = 7 * 24 * 3600
    publish_timeout_s: float = 30.0
    serve_max_ongoing_requests: int = 256

    # Reading back.
    max_read_limit: int = 1_000

    # Subscriptions: webhooks to loopback/private/link-local addresses are refused unless allowed.
    allow_private_webhooks: bool = False
    webhook_timeout_s: float = 10.0

    jwt_secret_key: str | None = None
    log_level: str = Field(default="INFO")

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def redis(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def jobs_url(self) -> str:
        return self.ray_dashboard_url or f"http://127.0.0.1:{self.ray_dashboard_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
