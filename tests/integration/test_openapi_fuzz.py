"""schemathesis over the running API's /openapi.json with a valid token: whatever the generated
input, no 5xx, and every answer with a documented status matches its documented schema.

The `fuzz` tenant's count quotas (tests/conftest.py) keep the topics it may create few.
"""

from __future__ import annotations

from typing import Any

import httpx
import pyarrow as pa
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from cluster.settings import Settings
from serve.app import create_app
from tests.conftest import Mint
from tests.integration.conftest import ipc_stream

TENANT = "fuzz"


def _arrow_frame() -> bytes:
    envelope = {"event_type": "a.b", "source_capability": "fuzz", "aggregate_id": "k"}
    return ipc_stream(pa.Table.from_pylist([{**envelope, "aggregate_type": "T", "n": 1}]))


# Arrow IPC bodies (the /arrow route takes nothing else): a real frame, or bytes that are not one.
schemathesis.openapi.media_type(
    "application/vnd.apache.arrow.stream", st.sampled_from([_arrow_frame(), b"not arrow"])
)


@pytest.fixture(scope="module")
def auth(mint: Mint) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(TENANT)}"}


# The app's /openapi.json, built here without services (the stack serves the same document;
# test_served_schema_is_this_one checks), so schemathesis can parametrize at collection time.
schema = schemathesis.openapi.from_dict(create_app(Settings(jwt_secret_key="k" * 32)).openapi())


def test_served_schema_is_this_one(http: httpx.Client) -> None:
    assert http.get("/openapi.json").json() == schema.raw_schema


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_documented_answers_match_their_schema(
    case: Any, stack: Settings, auth: dict[str, str]
) -> None:
    case.call_and_validate(
        base_url=stack.api_url,
        headers=auth,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=60,
    )
