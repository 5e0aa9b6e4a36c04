"""Every name the bus gives to something outside Python: Kafka topics, consumer groups and
transactional ids, Redis keys and channels, the Ray namespace and actor names. Nothing else
spells one; tests/unit/test_naming.py snapshots them all, so a rename is a visible decision.

Kafka (the tenant's namespace is the prefix `esb.<tenant>.`, which ACLs can match):

    esb.<tenant>.<topic_name>                   a stream's topic
    esb.<tenant>.<consumer_group_id>            a subscription's consumer group
    esb.<tenant>.sub.<id>.dlq / .retry          a subscription's dead-letter and replay topics
    esb.<tenant>.sub.<id>.<i>                   dispatcher i's transactional id (exactly once)
    esb.<tenant>.pipeline.<id>                  a pipeline's consumer group (lag only; see stores)
    esb.<tenant>.pl.<id>.p<partitions>          a pipeline owner's transactional id
    esb._schemas                                the schema registry's compacted log (all tenants)

Redis (all under `esb:`):

    esb:streams, esb:stream:<id>[:stats]        stream registry (cluster.stores.streams)
    esb:tenant:<t>:stream-names                 stream_name -> stream id
    esb:idem:<stream>:<event_id>                publish idempotency claims
    esb:subs, esb:sub:<id>[:<part>]             subscriptions (cluster.stores.subscriptions)
    esb:tenant:<t>:sub-groups                   consumer_group_id -> subscription id
    esb:pls, esb:pl:<id>[:<part>]               pipelines (cluster.stores.pipelines)
    esb:tenant:<t>:quota:<what>                 quota buckets and counts (cluster.security.quotas)
    esb:tenant:<t>:datakey[s][:<v>]             wrapped data keys (cluster.security.keystore)
    esb:datakeys:tenants                        tenants that have data keys
    esb:tenant:<t>:ev:<event_id>                event store: an event by id (stores.event_index)
    esb:stream:<id>:ix:<kind>[:<value>]         event store: a stream's query indexes and progress
    esb:tenant:<t>:agg:<type>:<id>[:<part>]     event store: an aggregate (stores.aggregates)
    esb:indexer:generation                      the indexer's group generation (rebuilds bump it)
    esb:registry:...                            schema registry cache (cluster.stores.schemas)
    esb:tenant:<t>:capabilities                 capability catalog (cluster.stores.capabilities)

>>> stream_topic("acme", "orders"), sub_key("s1", "live"), pipeline_key("p1", "res")
('esb.acme.orders', 'esb:sub:s1:live', 'esb:pl:p1:res')
"""

from __future__ import annotations

import uuid
from urllib.parse import quote as _url_quote

RAY_NAMESPACE = "esb"
REDIS_PREFIX = "esb"
KAFKA_PREFIX = "esb"


def _key(*parts: object) -> str:
    return ":".join(str(p) for p in parts if p != "")


# Kafka -------------------------------------------------------------------------------------


def tenant_topic_prefix(tenant_id: str) -> str:
    return f"{KAFKA_PREFIX}.{tenant_id}."


def stream_topic(tenant_id: str, topic_name: str) -> str:
    return f"{tenant_topic_prefix(tenant_id)}{topic_name}"


def subscription_group(tenant_id: str, consumer_group_id: str) -> str:
    return f"{tenant_topic_prefix(tenant_id)}{consumer_group_id}"


def dead_letter_topic(tenant_id: str, subscription_id: str) -> str:
    return f"{tenant_topic_prefix(tenant_id)}sub.{subscription_id}.dlq"


def retry_topic(tenant_id: str, subscription_id: str) -> str:
    return f"{tenant_topic_prefix(tenant_id)}sub.{subscription_id}.retry"


def dispatcher_transactional_id(tenant_id: str, subscription_id: str, index: int) -> str:
    return f"{tenant_topic_prefix(tenant_id)}sub.{subscription_id}.{index}"


def pipeline_group(tenant_id: str, pipeline_id: str) -> str:
    return f"{tenant_topic_prefix(tenant_id)}pipeline.{pipeline_id}"


def owner_transactional_id(tenant_id: str, pipeline_id: str, owner_key: str) -> str:
    return f"{tenant_topic_prefix(tenant_id)}pl.{pipeline_id}.p{owner_key}"


STREAM_TOPICS_PATTERN = r"^esb\.[A-Za-z0-9][A-Za-z0-9_\-]*\..+"
"""A regex subscription to every tenant's topics (the indexer keeps those of registered streams)."""


def indexer_group(generation: int) -> str:
    """The event store indexer's consumer group; a rebuild starts a new generation (from 0)."""
    return f"{KAFKA_PREFIX}-indexer-g{generation}"


SCHEMAS_TOPIC = f"{KAFKA_PREFIX}._schemas"  # the schema registry's log (compacted, as Confluent's)


def reader_group(purpose: str) -> str:
    """A throwaway group for a one-off read (offsets come from assign(), nothing is committed)."""
    return f"{KAFKA_PREFIX}-{purpose}-{uuid.uuid4().hex}"


# Ray ---------------------------------------------------------------------------------------


def dispatcher_name(subscription_id: str, index: int) -> str:
    return f"esb-sub-{subscription_id}-{index}"


def owner_name(pipeline_id: str, index: int) -> str:
    return f"esb-pl-{pipeline_id}-owner-{index}"


INDEXER_NAME = "esb-indexer"
DISPATCH_COORDINATOR = "esb-dispatch-coordinator"  # spreads subscriptions' dispatchers
# The cluster's one `GET /metrics` server (actors.metrics_exporter).
METRICS_EXPORTER = "esb-metrics-exporter"


# Redis -------------------------------------------------------------------------------------

ALL_STREAMS = _key(REDIS_PREFIX, "streams")
ALL_SUBSCRIPTIONS = _key(REDIS_PREFIX, "subs")
ALL_PIPELINES = _key(REDIS_PREFIX, "pls")


def stream_key(stream_id: str, part: str = "") -> str:
    return _key(REDIS_PREFIX, "stream", stream_id, part)


def idempotency_key(stream_id: str, event_id: str) -> str:
    return _key(REDIS_PREFIX, "idem", stream_id, event_id)


def sub_key(subscription_id: str, part: str = "") -> str:
    return _key(REDIS_PREFIX, "sub", subscription_id, part)


def pipeline_key(pipeline_id: str, part: str = "") -> str:
    return _key(REDIS_PREFIX, "pl", pipeline_id, part)


def tenant_key(tenant_id: str, *parts: object, prefix: str = REDIS_PREFIX) -> str:
    """Keys a tenant owns: stream names, subscription groups, quotas, data keys."""
    return _key(prefix, "tenant", tenant_id, *parts)


def datakey_tenants_key(prefix: str = REDIS_PREFIX) -> str:
    """The set of tenants that have data keys (rotation walks it instead of SCAN)."""
    return _key(prefix, "datakeys", "tenants")


# Event store (cluster.stores.event_index, cluster.stores.aggregates) ------------------------

INDEXER_GENERATION = _key(REDIS_PREFIX, "indexer", "generation")


def _quoted(value: str) -> str:
    """Percent-encoded, so `:` inside an aggregate type or id cannot make two names collide."""
    return _url_quote(value, safe="")


def event_key(tenant_id: str, event_id: str) -> str:
    return tenant_key(tenant_id, "ev", event_id)


def event_index_key(stream_id: str, kind: str, value: str = "") -> str:
    """A stream's index `kind` (time, type, agg, corr, user, progress), for one `value`."""
    return _key(REDIS_PREFIX, "stream", stream_id, "ix", kind, _quoted(value) if value else "")


def aggregate_key(tenant_id: str, aggregate_type: str, aggregate_id: str, part: str = "") -> str:
    return tenant_key(tenant_id, "agg", _quoted(aggregate_type), _quoted(aggregate_id), part)


def event_store_patterns() -> tuple[str, ...]:
    """SCAN patterns of everything a rebuild drops (the indexes, never the streams)."""
    return (
        tenant_key("*", "ev", "*"),
        _key(REDIS_PREFIX, "stream", "*", "ix", "*"),
        tenant_key("*", "agg", "*"),
    )


def registry_key(*parts: object) -> str:
    """The schema registry's Redis cache (cluster.stores.schemas): every key under one prefix,
    so the cache can be dropped (and is rebuilt from SCHEMAS_TOPIC) without touching the rest."""
    return _key(REDIS_PREFIX, "registry", *parts)


def registry_tenant_key(tenant_id: str, part: str) -> str:
    return registry_key("tenant", tenant_id, part)


def capabilities_key(tenant_id: str) -> str:
    """Hash capability name -> its record (cluster.stores.capabilities)."""
    return tenant_key(tenant_id, "capabilities")
