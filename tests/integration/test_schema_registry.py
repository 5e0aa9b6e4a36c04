"""The schema registry through the stock Confluent client, against the running API: register,
look up, fetch by id, test compatibility, a 409 for an incompatible version, Confluent's error
codes, a message serialized with Confluent's JSONSerializer carrying the registry's id; and
durability: the registry's Redis cache dropped, the registry still answers from its topic.

About "Redis flushed": the session's Redis is shared with every other test, so FLUSHDB there
would break them. Instead (1) the API's cache is dropped by deleting every key the registry
owns (all of them live under `esb:registry:`; nothing else of the registry is in Redis), and
(2) a brand-new registry instance on an empty Redis database (db 15 of the same server, flushed
first: nobody else uses it) reads everything back from the topic, as a new replica would.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from redis import Redis

from cluster import naming
from cluster.services.bus import Bus
from cluster.services.schemas import SchemaRegistryService
from cluster.settings import Settings
from tests.conftest import Mint

pytestmark = pytest.mark.integration

ORDER_V1 = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["order_id"],
    "additionalProperties": False,
}
ORDER_V2 = {  # closed content model: an optional property may be added (BACKWARD)
    **ORDER_V1,
    "properties": {**ORDER_V1["properties"], "currency": {"type": "string"}},
}
ORDER_BAD = {**ORDER_V2, "required": ["order_id", "customer"]}  # a new required property


def client_for(settings: Settings, token: str) -> SchemaRegistryClient:
    """A stock client as a Confluent Cloud user would configure it, with the bus's token."""
    return SchemaRegistryClient(
        {
            "url": f"{settings.api_url}/schema-registry",
            "bearer.auth.credentials.source": "STATIC_TOKEN",
            "bearer.auth.token": token,
            "bearer.auth.logical.cluster": "lsrc-ignored",  # required by the client, ignored
            "bearer.auth.identity.pool.id": "pool-ignored",
        }
    )


@pytest.fixture
def registry(
    stack: Settings, mint: Mint, unique: str
) -> Iterator[tuple[SchemaRegistryClient, str]]:
    tenant = f"sr-{unique}"
    yield client_for(stack, mint(tenant)), tenant


def json_schema(doc: dict[str, Any]) -> Schema:
    return Schema(orjson.dumps(doc).decode(), "JSON")


def code_of(call: Any) -> tuple[int, int]:
    with pytest.raises(SchemaRegistryError) as caught:
        call()
    return caught.value.http_status_code, caught.value.error_code


def test_stock_client_registers_looks_up_and_checks_compatibility(
    stack: Settings, registry: tuple[SchemaRegistryClient, str], mint: Mint
) -> None:
    client, tenant = registry
    subject = "orders-value"
    first = client.register_schema(subject, json_schema(ORDER_V1))
    assert client.register_schema(subject, json_schema(ORDER_V1)) == first  # identical: same id
    found = client.lookup_schema(subject, json_schema(ORDER_V1))
    assert (found.schema_id, found.version) == (first, 1)
    fetched = client.get_schema(first)
    assert fetched.schema_type == "JSON" and orjson.loads(fetched.schema_str) == ORDER_V1
    assert client.get_compatibility() == "BACKWARD"  # the default

    assert client.test_compatibility(subject, json_schema(ORDER_V2)) is True
    assert client.test_compatibility(subject, json_schema(ORDER_BAD)) is False
    assert code_of(lambda: client.register_schema(subject, json_schema(ORDER_BAD))) == (409, 409)

    second = client.register_schema(subject, json_schema(ORDER_V2))
    assert second != first
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (second, 2)
    assert client.get_version(subject, 1).schema_id == first
    assert client.get_subjects() == [subject]
    assert set(client.get_schema_types()) == {"AVRO", "JSON"}

    # per-subject config: the client sends `compatibility` and reads `compatibilityLevel`
    client.set_compatibility(subject, "NONE")
    assert client.get_compatibility(subject) == "NONE"
    assert client.get_compatibility() == "BACKWARD"
    assert client.register_schema(subject, json_schema(ORDER_BAD)) not in (first, second)

    assert code_of(lambda: client.get_schema(987_654_321)) == (404, 40403)
    stranger = client_for(stack, mint(f"{tenant}-other"))  # another tenant sees none of it
    assert code_of(lambda: stranger.get_schema(first)) == (404, 40403)
    assert stranger.get_subjects() == []
    assert code_of(lambda: client.get_latest_version("no-such-subject")) == (404, 40401)
    assert code_of(lambda: client.get_version(subject, 99)) == (404, 40402)
    invalid = Schema('{"type": 12}', "JSON")
    assert code_of(lambda: client.register_schema(subject, invalid)) == (422, 42201)
    assert code_of(lambda: client.set_compatibility(subject, "SIDEWAYS")) == (422, 42203)

    assert client.delete_version(subject, 3) == 3
    assert client.get_versions(subject) == [1, 2]
    assert client.delete_subject(subject) == [1, 2]
    assert client.get_subjects() == []
    # what the client parsed, on the wire: Confluent's media type and error body
    raw = httpx.get(
        f"{stack.api_url}/schema-registry/subjects/{subject}/versions/latest",
        headers={"Authorization": f"Bearer {mint(tenant)}"},
    )
    assert raw.status_code == 404
    assert raw.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
    assert raw.json() == {"error_code": 40401, "message": f"Subject {subject!r} not found"}


def test_avro_schemas_follow_avro_resolution_rules(
    registry: tuple[SchemaRegistryClient, str],
) -> None:
    client, _ = registry
    v1 = {"type": "record", "name": "Payment", "fields": [{"name": "id", "type": "string"}]}
    v2 = {**v1, "fields": [*v1["fields"], {"name": "cents", "type": "long", "default": 0}]}
    no_default = {**v1, "fields": [*v1["fields"], {"name": "cents", "type": "long"}]}
    client.register_schema("payments-value", Schema(orjson.dumps(v1).decode(), "AVRO"))
    assert client.test_compatibility("payments-value", Schema(orjson.dumps(v2).decode(), "AVRO"))
    bad = Schema(orjson.dumps(no_default).decode(), "AVRO")
    assert code_of(lambda: client.register_schema("payments-value", bad)) == (409, 409)
    client.set_compatibility(level="FORWARD")  # the tenant registry's default now
    assert client.get_compatibility("payments-value") == "FORWARD"
    assert client.test_compatibility("payments-value", bad) is True


def test_json_serializer_writes_the_registrys_id(
    registry: tuple[SchemaRegistryClient, str],
) -> None:
    client, _ = registry
    schema_id = client.register_schema("orders-value", json_schema(ORDER_V1))
    text = orjson.dumps(ORDER_V1).decode()
    serializer = JSONSerializer(
        text, client, conf={"auto.register.schemas": False, "use.latest.version": True}
    )
    context = SerializationContext("orders", MessageField.VALUE)
    order = {"order_id": "o-1", "amount": 12.5}
    data = serializer(order, context)
    assert data is not None
    magic, written_id = struct.unpack(">bI", data[:5])
    assert (magic, written_id) == (0, schema_id)
    assert JSONDeserializer(None, schema_registry_client=client)(data, context) == order
    with pytest.raises(Exception, match="order_id"):  # the serializer validates too
        serializer({"amount": 1}, context)


def _drop_registry_cache(settings: Settings) -> int:
    redis = Redis.from_url(settings.redis)
    try:
        keys = list(redis.scan_iter(match=naming.registry_key("*"), count=1000))
        return int(redis.delete(*keys)) if keys else 0
    finally:
        redis.close()


def test_registry_survives_a_lost_redis(
    stack: Settings, registry: tuple[SchemaRegistryClient, str], mint: Mint
) -> None:
    client, tenant = registry
    first = client.register_schema("orders-value", json_schema(ORDER_V1))
    second = client.register_schema("orders-value", json_schema(ORDER_V2))
    client.set_compatibility("orders-value", "FULL")
    assert _drop_registry_cache(stack) > 0

    fresh = client_for(stack, mint(tenant))  # no client-side cache either
    assert orjson.loads(fresh.get_schema(first).schema_str) == ORDER_V1
    assert fresh.get_versions("orders-value") == [1, 2]
    assert fresh.get_compatibility("orders-value") == "FULL"
    assert fresh.register_schema("orders-value", json_schema(ORDER_V2)) == second  # same id
    other = fresh.register_schema("other-value", json_schema({"type": "string"}))
    assert other > second  # ids continue after a replay: none is given out twice

    # A new replica on an empty Redis reads everything back from the topic.
    empty = stack.model_copy(update={"redis_url": stack.redis.rsplit("/", 1)[0] + "/15"})
    Redis.from_url(empty.redis).flushdb()

    async def read_back() -> tuple[list[str], int]:
        bus = Bus(empty)
        try:
            service = SchemaRegistryService(bus=bus)
            subjects = await service.subjects(tenant)
            latest = await service.version(tenant, "orders-value", "latest")
            return subjects, latest.id
        finally:
            await bus.close()

    assert asyncio.run(read_back()) == (["orders-value", "other-value"], second)
