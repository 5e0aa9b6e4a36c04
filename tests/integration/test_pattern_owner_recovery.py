"""A pattern pipeline on the real stack with an owner killed mid-run: the restarted owner
resumes from its checkpoint (pattern state, buffered events, event time), so the matches equal
the oracle over everything published, and none is emitted twice (the counters committed with
the results say so)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cluster.naming import owner_name
from cluster.settings import Settings
from tests.integration.conftest import create_stream
from tests.integration.correlation_helpers import (
    BASE_MS,
    BRUTE_FORCE,
    PHASE_MS,
    UNPAID,
    fraud_spec,
    matches,
    on_topic,
    pattern_oracle,
    sentinels,
    traffic,
)
from tests.integration.pipeline_helpers import TENANT, caught_up, publish, submit_spec
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def test_a_killed_pattern_owner_loses_and_repeats_nothing(
    stack: Settings, http: httpx.Client, ray_session: Any, unique: str
) -> None:
    import ray

    stream = create_stream(http, TENANT, f"cep-kill-{unique}", partitions=2)
    spec = fraud_spec(stream["stream_id"])
    pipeline_id = submit_spec(http, spec)
    first, second = traffic(3, BASE_MS, 1_500), traffic(4, BASE_MS + 400_000, 1_500)
    publish(http, stream["stream_id"], first)
    wait_for(lambda: caught_up(http, pipeline_id), "the first half to be processed")

    ray.kill(ray.get_actor(owner_name(pipeline_id, 0), namespace="esb"))
    publish(http, stream["stream_id"], second)
    wait_for(
        lambda: http.get(f"/api/v1/pipelines/{pipeline_id}").json()["owner_restarts"] >= 1,
        "the supervisor to replace the killed owner",
    )
    sentinels(stack, stream["kafka_topic"], 2, BASE_MS + PHASE_MS)

    events = on_topic(stack, stream["kafka_topic"], len(first) + len(second))
    selected = [e for e in events if e["type"].split(".")[0] in ("order", "login")]
    expected = pattern_oracle(selected, [UNPAID, BRUTE_FORCE])
    wait_for(lambda: caught_up(http, pipeline_id), "the pipeline to catch up after the kill")
    assert wait_for(lambda: matches(http, pipeline_id) == expected or None, "matches") is True
    progress = http.get(f"/api/v1/pipelines/{pipeline_id}").json()["progress"]
    assert progress["matches_emitted"] + progress["absences_emitted"] == len(expected)
    assert http.delete(f"/api/v1/pipelines/{pipeline_id}").status_code == 200
