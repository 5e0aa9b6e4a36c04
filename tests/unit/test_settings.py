"""Settings reach workers one way (worker_env), and secrets never show in dumps or reprs."""

from __future__ import annotations

from pathlib import Path

from cluster.settings import WORKER_FIELDS, Settings, worker_env

SECRET, KEY = "s" * 40, "bWFzdGVyLWtleS1iYXNlNjQ="


def test_what_a_worker_gets_is_exactly_this_list() -> None:
    assert WORKER_FIELDS == (
        "kafka_bootstrap_servers",
        "kafka_security_protocol",
        "kafka_ssl_ca_location",
        "redis_url",
        "ray_auth_mode",
        "esb_ray_token_file",
        "allow_private_webhooks",
        "webhook_timeout_s",
        "esb_master_key",
        "esb_master_key_file",
        "log_level",
        "log_format",
        "metrics_enabled",
        "tracing_enabled",
        "otel_exporter_otlp_endpoint",
        "jaeger_endpoint",
    )


def test_a_worker_reads_back_the_settings_it_was_given() -> None:
    given = Settings(
        kafka_port=19092,
        redis_port=16379,
        allow_private_webhooks=True,
        esb_master_key=KEY,
        kafka_ssl_ca_location=Path("/tls/ca.pem"),
        jwt_secret_key=SECRET,
    )
    env = worker_env(given)
    assert "JWT_SECRET_KEY" not in env  # workers verify no tokens
    worker = Settings(**{name.lower(): value for name, value in env.items()})
    for name in WORKER_FIELDS:
        if name not in ("kafka_bootstrap_servers", "redis_url"):
            assert getattr(worker, name) == getattr(given, name), name
    assert worker.kafka_bootstrap == given.kafka_bootstrap  # the resolved local addresses
    assert worker.redis == given.redis


def test_secrets_are_hidden_in_dumps_and_reprs() -> None:
    settings = Settings(jwt_secret_key=SECRET, esb_master_key=KEY)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in text and KEY not in text


def test_settings_differing_only_in_a_secret_are_told_apart() -> None:
    assert Settings(esb_master_key=KEY).identity() != Settings(esb_master_key=KEY + "x").identity()


def test_the_local_bootstrap_lists_every_broker_of_a_cluster() -> None:
    single = Settings(kafka_bootstrap_servers=None, kafka_port=19092)
    assert single.kafka_bootstrap == "127.0.0.1:19092"
    three = Settings(kafka_bootstrap_servers=None, kafka_brokers=3, kafka_port=19092)
    assert three.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112"
    env = worker_env(three)  # workers get every seed
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == three.kafka_bootstrap
