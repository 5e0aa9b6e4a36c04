"""Settings: the one place that reads environment variables.

Everything else receives a :class:`Settings` (or reads :func:`get_settings`), so tests and the
local stack can build their own without touching the process environment.

Workers (a pipeline's job and its partition owners, subscription dispatchers) get their settings
one way: the environment of their Ray runtime_env, built by :func:`worker_env` from exactly
:data:`WORKER_FIELDS`; anything else takes its default there. Secrets are `SecretStr`: dumps,
reprs and logs show `**********`.

>>> Settings(api_port=9000).api_port
9000
>>> str(Settings(jwt_secret_key="s" * 32).jwt_secret_key)
'**********'
>>> worker_env(Settings(redis_port=7000))["REDIS_URL"]
'redis://127.0.0.1:7000/0'
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # External services: when set, `esb up` and the test fixtures use them instead of local ones.
    kafka_bootstrap_servers: str | None = None
    redis_url: str | None = None
    ray_address: str | None = None
    # Ray's own door (README "Security"): `token` (every node, driver and Jobs API client presents
    # the token) or `disabled`. Every process we start gets this value.
    ray_auth_mode: Literal["token", "disabled"] = "token"
    # Token mode: the token's file, handed to Ray as RAY_AUTH_TOKEN_PATH (not read from that
    # variable: drivers set it for Ray); the local stack generates one when unset.
    esb_ray_token_file: Path | None = None

    # HTTP API (Ray Serve). The ingress of a local stack: `haproxy` (HAProxy straight to the
    # replica; HTTP only) or `proxy` (Serve's Python proxy; HTTPS always uses it). See README.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_ingress: Literal["haproxy", "proxy"] = "haproxy"
    api_replicas: int = 1
    api_access_log: bool = False  # Serve's per-request access log lines (CPU per request)

    # Local stack (used only when the matching external service is unset).
    esb_state_dir: Path = Path(".esb")
    esb_cache_dir: Path = Path.home() / ".cache" / "esb"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    # KAFKA_BROKERS local KRaft nodes (`esb up --kafka-brokers 3`): node n listens on
    # KAFKA_PORT + (n-1) * KAFKA_PORT_STEP (controller and TLS ports alike), each with a
    # KAFKA_CLUSTER_HEAP heap (KAFKA_HEAP is the single broker's).
    kafka_brokers: int = Field(default=1, ge=1, le=9)
    kafka_port_step: int = Field(default=10, ge=1)
    kafka_cluster_heap: str = "256m"
    # The bus's producers wait this long to fill a batch. 0: a single publish is sent at once
    # (records still batch while earlier requests are in flight); raise it for fewer, bigger
    # requests under heavy load, at that much latency per publish.
    kafka_linger_ms: float = 0.0
    redis_port: int = 6379
    ray_port: int = 6380
    ray_dashboard_port: int = 8265
    # The Jobs API (the Ray dashboard); defaults to the local head's dashboard port.
    ray_dashboard_url: str | None = None
    ray_num_cpus: int = 2
    ray_workers: int = 0  # extra Ray worker nodes (1 CPU each) joining the local head
    ray_object_store_bytes: int = 512 * 1024 * 1024

    # Publishing limits: exceeding either is a 413 with a message.
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch_events: int = 10_000
    # One Kafka record (key + CloudEvent JSON, or one Arrow-batched record): the broker's
    # message.max.bytes (1 MiB by default) must fit it, with room for headers.
    max_event_bytes: int = 1_000_000
    # How long a client event_id is remembered for deduplication.
    idempotency_ttl_s: int = 7 * 24 * 3600
    publish_timeout_s: float = 30.0
    serve_max_ongoing_requests: int = 256

    # Reading back.
    max_read_limit: int = 1_000

    # Subscriptions: webhooks to loopback/private/link-local addresses are refused unless allowed.
    allow_private_webhooks: bool = False
    webhook_timeout_s: float = 10.0

    # Authentication (README "Security"). The algorithm is pinned here, never read from a token.
    jwt_algorithm: str = "HS256"
    jwt_secret_key: SecretStr | None = None  # HS*; the local stack generates one into the state dir
    jwt_jwks: str | None = None  # RS*/ES*: a JWKS file path or https:// URL
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: float = 30.0
    jwt_jwks_refresh_s: float = 30.0  # an unknown kid reloads the JWKS at most this often
    # Requests without a token act as an admin of any tenant: the local quick start only.
    esb_auth_dev_mode: bool = False

    # Encryption at rest for `encrypted: true` streams: a base64 32-byte key, or a file holding
    # one (or JSON with several, for rotation). The local stack generates a key file.
    esb_master_key: SecretStr | None = None
    esb_master_key_file: Path | None = None

    # Per-tenant quotas (None: unlimited); `esb_quota_overrides` gives some tenants others,
    # e.g. ESB_QUOTA_OVERRIDES='{"big": {"events_per_s": 50000}}'.
    # The defaults are the product's promise per node (1M events/s): a tenant that floods the
    # bus meets a 429 before it starves the others, a busy one never meets it.
    esb_quota_events_per_s: float | None = 1_000_000.0
    esb_quota_bytes_per_s: float | None = 512 * 1024 * 1024
    esb_quota_burst_s: float = 2.0
    esb_quota_max_streams: int | None = 100
    esb_quota_max_subscriptions: int | None = 100
    esb_quota_overrides: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)

    # TLS for the HTTP API: both set turns HTTPS on.
    api_tls_certfile: Path | None = None
    api_tls_keyfile: Path | None = None
    # TLS to Kafka: SSL with this CA; the local stack can start an SSL listener on
    # `kafka_ssl_port` with a CA and broker certificate it generates in the state dir.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_ssl_ca_location: Path | None = None
    kafka_ssl_port: int | None = None

    log_level: str = Field(default="INFO")
    # Observability (README "Observability"): JSON or text log lines; Prometheus `/metrics` on
    # METRICS_PORT (bound to API_HOST); OpenTelemetry traces to an OTLP endpoint.
    log_format: Literal["json", "text"] = "text"
    metrics_enabled: bool = True
    metrics_port: int = 9090
    tracing_enabled: bool = False
    otel_exporter_otlp_endpoint: str | None = None  # e.g. http://127.0.0.1:4318 (OTLP/HTTP)
    jaeger_endpoint: str | None = None  # accepted as the OTLP endpoint (Jaeger speaks OTLP)

    @field_validator(
        "api_tls_certfile",
        "api_tls_keyfile",
        "kafka_ssl_ca_location",
        "esb_master_key_file",
        "esb_ray_token_file",
    )
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        # Serve's proxy and Ray workers run in other directories: a relative path would miss.
        return path.expanduser().resolve() if path is not None else None

    @property
    def kafka_bootstrap(self) -> str:
        """The given brokers, else every local node: their SSL listeners when clients speak SSL.

        >>> Settings(kafka_brokers=3, kafka_port=9092).kafka_bootstrap
        '127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112'
        """
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        ssl = self.kafka_security_protocol.upper() == "SSL" and self.kafka_ssl_port is not None
        first = self.kafka_ssl_port if ssl and self.kafka_ssl_port else self.kafka_port
        shifts = range(0, self.kafka_brokers * self.kafka_port_step, self.kafka_port_step)
        return ",".join(f"127.0.0.1:{first + shift}" for shift in shifts)

    @property
    def redis(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def jobs_url(self) -> str:
        return self.ray_dashboard_url or f"http://127.0.0.1:{self.ray_dashboard_port}"

    @property
    def api_tls(self) -> bool:
        return self.api_tls_certfile is not None and self.api_tls_keyfile is not None

    @property
    def api_url(self) -> str:
        scheme = "https" if self.api_tls else "http"
        return f"{scheme}://{self.api_host}:{self.api_port}"

    def identity(self) -> str:
        """Tells settings apart, secrets included (hashed: the dump hides them)."""
        secrets = (self.jwt_secret_key, self.esb_master_key)
        revealed = [s.get_secret_value() if s else "" for s in secrets]
        digest = hashlib.sha256("\0".join(revealed).encode()).hexdigest()
        return f"{self.model_dump_json()}|{digest}"


# What a worker process needs; its addresses are the resolved ones (a local stack's ports).
WORKER_FIELDS = (
    "kafka_bootstrap_servers",
    "kafka_security_protocol",
    "kafka_ssl_ca_location",  # the path must exist on every node
    "redis_url",
    "ray_auth_mode",
    "esb_ray_token_file",  # token mode: the Ray token's file, on every node
    "allow_private_webhooks",
    "webhook_timeout_s",
    "esb_master_key",  # prefer the file: an inline key shows in the Ray dashboard's runtime env
    "esb_master_key_file",
    "log_level",
    "log_format",
    "metrics_enabled",
    "tracing_enabled",
    "otel_exporter_otlp_endpoint",
    "jaeger_endpoint",
)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment variables a worker's `Settings()` reads: WORKER_FIELDS, unset ones left
    out. The one place secrets are revealed, into the runtime_env of the bus's own workers."""
    values = {
        **settings.model_dump(include=set(WORKER_FIELDS)),
        "kafka_bootstrap_servers": settings.kafka_bootstrap,
        "redis_url": settings.redis,
    }
    env = {}
    for name in WORKER_FIELDS:
        value = values[name]
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
