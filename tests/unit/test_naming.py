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
    "stream_names_key": "esb:tenant:acme:stream-names",
    "sub_groups_key": "esb:tenant:acme:sub-groups",
    "quota_key": "esb:tenant:acme:quota:publish",
    "datakey_key": "esb:tenant:acme:datakey:3",
    "datakey_tenants_key": "esb:datakeys:tenants",
    "RAY_NAMESPACE": "esb",
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
        "stream_names_key": naming.tenant_key("acme", "stream-names"),
        "sub_groups_key": naming.tenant_key("acme", "sub-groups"),
        "quota_key": naming.tenant_key("acme", "quota", "publish"),
        "datakey_key": naming.tenant_key("acme", "datakey", 3),
        "datakey_tenants_key": naming.datakey_tenants_key(),
        "RAY_NAMESPACE": naming.RAY_NAMESPACE,
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
