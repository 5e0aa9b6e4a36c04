"""/openapi.json documents what every HTTP route answers: a named model for each status the
route really uses for success (201 on creation, 207 for a partly failed batch, ...)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from cluster.settings import Settings
from serve.app import create_app

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Statuses other than the route's own that answer with a body a client reads as a result.
EXTRA_STATUSES = {
    ("post", "/api/v1/events"): {"200"},  # a duplicate event id
    ("post", "/api/v1/events/batch"): {"207"},  # some events failed at the broker
    ("get", "/api/v1/status"): {"503"},  # a dependency is down
    ("get", "/api/v1/kafka/health"): {"503"},
    ("get", "/api/v1/redis/health"): {"503"},
    ("get", "/api/v1/database/health"): {"503"},
}
CREATED = {
    ("post", "/api/v1/streams"),
    ("post", "/api/v1/events"),
    ("post", "/api/v1/pipelines"),
    ("post", "/api/v1/subscriptions"),
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    # No Ray, no services: building the document calls none of them.
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        redis_url="redis://127.0.0.1:1/0",
        jwt_secret_key=SecretStr("k" * 32),
    )
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def _named(schema: dict[str, Any]) -> bool:
    """A component model, or a union of them (not an untyped object or `{}`)."""
    if "$ref" in schema:
        return str(schema["$ref"]).startswith("#/components/schemas/")
    members: list[dict[str, Any]] = schema.get("oneOf") or schema.get("anyOf") or []
    return bool(members) and all(_named(m) for m in members)


def _model_of(spec: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    answer = spec["paths"][path][method]["responses"].get(status, {})
    found: dict[str, Any] = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return found


def test_every_route_has_a_model_for_each_success_status(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    assert len(operations) >= 28
    missing = []
    for method, path, op in operations:
        successes = [s for s in op["responses"] if s.startswith("2")]
        if not successes:
            missing.append(f"{method.upper()} {path}: no 2xx answer documented")
        for status in successes:
            if not _named(_model_of(spec, method, path, status)):
                missing.append(f"{method.upper()} {path} {status}")
    assert not missing, "routes without a typed response model:\n" + "\n".join(missing)


@pytest.mark.parametrize(("method", "path"), sorted(CREATED))
def test_creation_is_documented_as_201(spec: dict[str, Any], method: str, path: str) -> None:
    assert _named(_model_of(spec, method, path, "201"))


@pytest.mark.parametrize(("method", "path"), sorted(EXTRA_STATUSES))
def test_other_statuses_in_use_are_documented(spec: dict[str, Any], method: str, path: str) -> None:
    for status in EXTRA_STATUSES[(method, path)]:
        assert _named(_model_of(spec, method, path, status)), status


def test_created_routes_do_not_claim_200(spec: dict[str, Any]) -> None:
    """Only publish answers 200 (a duplicate) besides 201."""
    for method, path in CREATED - {("post", "/api/v1/events")}:
        assert "200" not in spec["paths"][path][method]["responses"], path


def test_error_answers_are_documented_as_problems(spec: dict[str, Any]) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"title", "status", "detail"}
    for method, path, operation in _operations(spec):
        for status in ("401", "404", "422"):
            content = operation["responses"][status]["content"]
            if path.startswith("/schema-registry/"):  # Confluent's API: its own error body
                error = content["application/json"]["schema"]["$ref"]
                assert error == "#/components/schemas/ConfluentErrorOut", (method, path, status)
                continue
            assert list(content) == ["application/problem+json"], (method, path, status)
