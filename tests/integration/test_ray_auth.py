"""The cluster's own door (RAY_AUTH_MODE=token): a Ray head of the local stack started in token
mode lets in the drivers, Jobs API clients and worker nodes that present the token of the state
dir, and refuses those that do not. Stock clients only: Ray's own `ray.init` and Jobs SDK in
fresh processes, plain HTTP to the Jobs API, and `ray start --address` for a node."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cluster import ray_client
from cluster.settings import Settings
from cluster.stack import processes, ray_head, ray_worker

pytestmark = pytest.mark.integration

DRIVER = textwrap.dedent("""
    import sys
    import ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    print("CPUS", ray.cluster_resources().get("CPU"))
""")
JOBS = textwrap.dedent("""
    import sys
    from ray.job_submission import JobSubmissionClient
    print("JOBS", len(JobSubmissionClient(sys.argv[1]).list_jobs()))
""")
CLIENT_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def token_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A lone Ray head in token mode (no Kafka, Redis or API: the door is Ray's), resolved."""
    port, dashboard = processes.free_ports(2)
    state = tmp_path_factory.mktemp("ray-auth")
    settings = Settings(
        esb_state_dir=state,
        ray_port=port,
        ray_dashboard_port=dashboard,
        ray_num_cpus=1,
        ray_auth_mode="token",
    )
    record = ray_head.launch(settings, lambda _line: None)
    try:
        assert processes.wait_for(
            lambda: ray_head.is_ready(record) or not processes.is_alive(record),
            timeout_s=ray_head.READY_TIMEOUT_S,
            interval_s=0.5,
        ), processes.log_tail(record.log_path)
        assert processes.is_alive(record), processes.log_tail(record.log_path)
        yield settings.model_copy(
            update={"ray_address": record.address, **ray_head.resolved_auth(record)}
        )
    finally:
        ray_head.stop(record)


def run(
    script: str, argument: str, env: dict[str, str], home: Path
) -> subprocess.CompletedProcess[str]:
    """script in a fresh interpreter with exactly the auth variables of env (and a HOME with no
    ~/.ray/auth_token), so nothing of this process's Ray state leaks in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    clean.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-c", script, argument],
        env={**clean, "HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
    )


def test_the_session_stack_is_in_token_mode_by_default(stack: Settings) -> None:
    if stack.ray_auth_mode != "token":
        pytest.skip(f"RAY_AUTH_MODE={stack.ray_auth_mode} in this environment")
    assert httpx.get(f"{stack.jobs_url}/api/jobs/", timeout=30).status_code == 401


def test_the_token_is_generated_once_into_the_state_dir(token_head: Settings) -> None:
    path = token_head.esb_ray_token_file
    assert path is not None and path.is_relative_to(token_head.esb_state_dir.resolve())
    assert path.stat().st_mode & 0o077 == 0  # like the JWT secret: owner only
    assert len(path.read_text().strip()) == 64  # Ray's format: 256 random bits, hex
    assert ray_head.token_file(token_head) == path  # never regenerated


def test_the_jobs_api_refuses_requests_without_the_token(token_head: Settings) -> None:
    url = f"{token_head.jobs_url}/api/jobs/"
    token = (token_head.esb_ray_token_file or Path()).read_text().strip()
    assert httpx.get(url, timeout=30).status_code == 401
    assert httpx.get(url, timeout=30, headers={"Authorization": "Bearer x" * 8}).status_code == 403
    assert (
        httpx.get(url, timeout=30, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )


def test_the_jobs_sdk_needs_the_token(token_head: Settings, tmp_path: Path) -> None:
    with_token = run(JOBS, token_head.jobs_url, ray_client.auth_env(token_head), tmp_path)
    assert with_token.returncode == 0 and "JOBS 0" in with_token.stdout, with_token.stderr
    without = run(JOBS, token_head.jobs_url, {"RAY_AUTH_MODE": "disabled"}, tmp_path)
    assert without.returncode != 0, without.stdout
    assert "Missing authentication token" in without.stderr, without.stderr


def test_a_driver_needs_the_token(token_head: Settings, tmp_path: Path) -> None:
    address = str(token_head.ray_address)
    with_token = run(DRIVER, address, ray_client.auth_env(token_head), tmp_path)
    assert with_token.returncode == 0 and "CPUS 1.0" in with_token.stdout, with_token.stderr
    wrong = tmp_path / "wrong-token"
    wrong.write_text("0" * 64)
    bad = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)}
    refused = run(DRIVER, address, bad, tmp_path)
    assert refused.returncode != 0 and "CPUS" not in refused.stdout, refused.stdout
    assert "auth" in refused.stderr.lower(), refused.stderr[-2000:]


def test_a_node_joins_only_with_the_token(token_head: Settings) -> None:
    address = str(token_head.ray_address)
    node = ray_worker.launch(token_head, address, index=1)
    try:
        assert processes.wait_for(
            lambda: ray_worker.is_ready(node) or not processes.is_alive(node),
            timeout_s=ray_worker.READY_TIMEOUT_S,
            interval_s=0.5,
        )
        assert ray_worker.node_id(node) is not None, processes.log_tail(node.log_path)
        no_token = token_head.model_copy(update={"ray_auth_mode": "disabled"})
        intruder = ray_worker.launch(no_token, address, index=2)
        try:
            # `ray start` gives up on a GCS that refuses it and exits; it is never listed.
            exited = processes.wait_for(
                lambda: not processes.is_alive(intruder), timeout_s=ray_worker.READY_TIMEOUT_S
            )
            assert exited, processes.log_tail(intruder.log_path)
            listed = {n["node_name"] for n in ray_worker.ray_nodes(node)}
            assert node.extra["node_name"] in listed
            assert intruder.extra["node_name"] not in listed
        finally:
            ray_worker.stop(intruder)
    finally:
        ray_worker.stop(node)
