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

>>> stream_topic("acme", "orders"), sub_key("s1", "live"), pipeline_key("p1", "res")
('esb.acme.orders', 'esb:sub:s1:live', 'esb:pl:p1:res')
"""

from __future__ import annotations

import uuid

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


def reader_group(purpose: str) -> str:
    """A throwaway group for a one-off read (offsets come from assign(), nothing is committed)."""
    return f"{KAFKA_PREFIX}-{purpose}-{uuid.uuid4().hex}"


# Ray ---------------------------------------------------------------------------------------


def dispatcher_name(subscription_id: str, index: int) -> str:
    return f"esb-sub-{subscription_id}-{index}"


def owner_name(pipeline_id: str, index: int) -> str:
    return f"esb-pl-{pipeline_id}-owner-{index}"


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
