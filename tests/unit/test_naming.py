"""Every external name the bus gives, as a snapshot: renaming a topic, group, transactional id,
Redis key or Ray name strands existing data or fences nothing, so a change here must be a
decision (with a migration), never an accident."""

from __future__ import annotations

from cluster import naming

SNAPSHOT = {
    "stream_topic": "esb.acme.orders",
    "subscription_group": "esb.acme.billing",
    "dead_letter_topic": "esb.acme.sub.s1.dlq",
    "retry_topic": "esb.acme.sub.s1.retry",
    "dispatcher_transactional_id": "esb.acme.sub.s1.0",
    "pipeline_group": "esb.acme.pipeline.p1",
    "owner_transactional_id": "esb.acme.pl.p1.p0-2",
    "dispatcher_name": "esb-sub-s1-0",
    "owner_name": "esb-pl-p1-owner-0",
    "ALL_STREAMS": "esb:streams",
    "ALL_SUBSCRIPTIONS": "esb:subs",
    "ALL_PIPELINES": "esb:pls",
    "stream_key": "esb:stream:st1",
    "stream_stats_key": "esb:stream:st1:stats",
    "idempotency_key": "esb:idem:st1:e1",
    "sub_key": "esb:sub:s1",
    "sub_state_key": "esb:sub:s1:state",
    "pipeline_key": "esb:pl:p1",
    "pipeline_results_key": "esb:pl:p1:res",
    "pipeline_patterns_key": "esb:pl:p1:patterns",
    "pipeline_owners_key": "esb:pl:p1:owners",
    "stream_names_key": "esb:tenant:acme:stream-names",
    "sub_groups_key": "esb:tenant:acme:sub-groups",
    "quota_key": "esb:tenant:acme:quota:publish",
    "datakey_key": "esb:tenant:acme:datakey:3",
    "datakey_tenants_key": "esb:datakeys:tenants",
    "RAY_NAMESPACE": "esb",
    "STREAM_TOPICS_PATTERN": r"^esb\.[A-Za-z0-9][A-Za-z0-9_\-]*\..+",
    "indexer_group": "esb-indexer-g0",
    "INDEXER_NAME": "esb-indexer",
    "DISPATCH_COORDINATOR": "esb-dispatch-coordinator",
    "INDEXER_GENERATION": "esb:indexer:generation",
    "event_key": "esb:tenant:acme:ev:e1",
    "event_index_key": "esb:stream:st1:ix:agg:Order%3Ao1",
    "aggregate_key": "esb:tenant:acme:agg:Order:o%3A1:log",
    "event_store_patterns": ("esb:tenant:*:ev:*", "esb:stream:*:ix:*", "esb:tenant:*:agg:*"),
    "METRICS_EXPORTER": "esb-metrics-exporter",
    "SCHEMAS_TOPIC": "esb._schemas",
    "registry_key": "esb:registry:schema:7",
    "registry_tenant_key": "esb:registry:tenant:acme:subjects",
    "capabilities_key": "esb:tenant:acme:capabilities",
}


def test_names_are_as_snapshotted() -> None:
    names = {
        "stream_topic": naming.stream_topic("acme", "orders"),
        "subscription_group": naming.subscription_group("acme", "billing"),
        "dead_letter_topic": naming.dead_letter_topic("acme", "s1"),
        "retry_topic": naming.retry_topic("acme", "s1"),
        "dispatcher_transactional_id": naming.dispatcher_transactional_id("acme", "s1", 0),
        "pipeline_group": naming.pipeline_group("acme", "p1"),
        "owner_transactional_id": naming.owner_transactional_id("acme", "p1", "0-2"),
        "dispatcher_name": naming.dispatcher_name("s1", 0),
        "owner_name": naming.owner_name("p1", 0),
        "ALL_STREAMS": naming.ALL_STREAMS,
        "ALL_SUBSCRIPTIONS": naming.ALL_SUBSCRIPTIONS,
        "ALL_PIPELINES": naming.ALL_PIPELINES,
        "stream_key": naming.stream_key("st1"),
        "stream_stats_key": naming.stream_key("st1", "stats"),
        "idempotency_key": naming.idempotency_key("st1", "e1"),
        "sub_key": naming.sub_key("s1"),
        "sub_state_key": naming.sub_key("s1", "state"),
        "pipeline_key": naming.pipeline_key("p1"),
        "pipeline_results_key": naming.pipeline_key("p1", "res"),
        "pipeline_patterns_key": naming.pipeline_key("p1", "patterns"),
        "pipeline_owners_key": naming.pipeline_key("p1", "owners"),
        "stream_names_key": naming.tenant_key("acme", "stream-names"),
        "sub_groups_key": naming.tenant_key("acme", "sub-groups"),
        "quota_key": naming.tenant_key("acme", "quota", "publish"),
        "datakey_key": naming.tenant_key("acme", "datakey", 3),
        "datakey_tenants_key": naming.datakey_tenants_key(),
        "RAY_NAMESPACE": naming.RAY_NAMESPACE,
        "STREAM_TOPICS_PATTERN": naming.STREAM_TOPICS_PATTERN,
        "indexer_group": naming.indexer_group(0),
        "INDEXER_NAME": naming.INDEXER_NAME,
        "DISPATCH_COORDINATOR": naming.DISPATCH_COORDINATOR,
        "INDEXER_GENERATION": naming.INDEXER_GENERATION,
        "event_key": naming.event_key("acme", "e1"),
        "event_index_key": naming.event_index_key("st1", "agg", "Order:o1"),
        "aggregate_key": naming.aggregate_key("acme", "Order", "o:1", "log"),
        "event_store_patterns": naming.event_store_patterns(),
        "METRICS_EXPORTER": naming.METRICS_EXPORTER,
        "SCHEMAS_TOPIC": naming.SCHEMAS_TOPIC,
        "registry_key": naming.registry_key("schema", 7),
        "registry_tenant_key": naming.registry_tenant_key("acme", "subjects"),
        "capabilities_key": naming.capabilities_key("acme"),
    }
    assert names == SNAPSHOT


def test_every_public_name_builder_is_snapshotted() -> None:
    builders = {
        n
        for n in dir(naming)
        if not n.startswith("_") and (callable(getattr(naming, n)) or n.isupper())
    }
    covered = {n.removesuffix("_key") for n in SNAPSHOT} | set(SNAPSHOT)
    helpers = {"tenant_key", "tenant_topic_prefix", "reader_group", "annotations", "uuid"}
    helpers |= {"REDIS_PREFIX", "KAFKA_PREFIX"}
    assert builders - covered - helpers == set()


def test_reader_groups_are_fresh() -> None:
    assert naming.reader_group("reader") != naming.reader_group("reader")
    assert naming.reader_group("reader").startswith("esb-reader-")
