"""Fixtures for the whole suite. The real services start only when a test asks for `stack` (the
integration tests do); unit tests never start anything and never initialise Ray.

Services come from the environment when KAFKA_BOOTSTRAP_SERVERS / REDIS_URL / RAY_ADDRESS are set;
otherwise the local stack is started once per session on free ports in a fresh /tmp directory,
and stopped (only what it started) at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster import ray_client
from cluster.security import auth_config_from, mint_token
from cluster.security.principal import Role
from cluster.settings import Settings
from cluster.stack import local_stack, processes, ray_head

# Tenants with small quotas, for tests/integration/test_quotas.py.
QUOTA_OVERRIDES: dict[str, dict[str, float | int | None]] = {
    "quota-flood": {"events_per_s": 2, "burst_s": 25},  # 50 at once, then 2/s
    "quota-count": {"max_streams": 2, "max_subscriptions": 1},
    "fuzz": {"max_streams": 10, "max_subscriptions": 5},  # schemathesis creates what it can
}
DEFAULT_TENANT = "acme"
ISSUER, AUDIENCE = "esb-tests", "esb-api"


def _test_settings(state_dir: Path) -> Settings:
    """Settings() from the environment, with only the local ports and the state dir replaced."""
    # Below the ephemeral range (processes.port_run): the OTLP port has no listener until
    # test_tracing starts one, and a service restarted on its port must find it free.
    first = processes.port_run(8)
    kafka, controller, redis, ray, dashboard, api, metrics, otlp = range(first, first + 8)
    return Settings(
        metrics_port=metrics,
        # Spans go to tests/integration/test_tracing.py's OTLP receiver (dropped while it is not
        # listening); the bus's processes export them in the background.
        tracing_enabled=True,
        otel_exporter_otlp_endpoint=f"http://127.0.0.1:{otlp}",
        esb_state_dir=state_dir,
        kafka_port=kafka,
        kafka_controller_port=controller,
        redis_port=redis,
        ray_port=ray,
        ray_dashboard_port=dashboard,
        api_port=api,
        allow_private_webhooks=True,  # the webhook tests' receivers listen on 127.0.0.1
        jwt_issuer=ISSUER,  # so the token tests can get them wrong
        jwt_audience=AUDIENCE,
        # Rates unlimited but for the tenants the quota tests flood; counts well above use.
        esb_quota_events_per_s=None,
        esb_quota_bytes_per_s=None,
        esb_quota_max_streams=1000,
        esb_quota_max_subscriptions=1000,
        esb_quota_overrides=QUOTA_OVERRIDES,
    )


def _saver() -> Callable[[Any], bool]:
    """A function for `__ray_call__` (it runs inside an actor's process): save the process's
    coverage data now, then every second, from one thread per process. Defined in here so that
    Ray pickles it by value: tests/ is not importable in the workers."""

    def start_saving(_actor: Any) -> bool:
        import threading
        import time

        import coverage

        cov = coverage.Coverage.current()
        if cov is None:
            return False
        if getattr(cov, "esb_saver", None) is None:

            def loop() -> None:
                while True:
                    time.sleep(1.0)
                    with contextlib.suppress(Exception):
                        cov.save()

            saver = threading.Thread(target=loop, name="coverage-saver", daemon=True)
            cov.esb_saver = saver  # type: ignore[attr-defined]
            saver.start()
        cov.save()
        return True

    return start_saving


class RayCoverage:
    """Coverage data out of the stack's Ray actors, only under `make test` (pytest-cov with
    coverage.py's patch=subprocess, which sets COVERAGE_PROCESS_CONFIG).

    Every Python process inheriting this one's environment measures itself, the Ray head's
    workers included, and saves at exit. But Ray ends actors with SIGKILL or a C-level exit
    (ray.kill, an owner gone, the raylet stopping) that skips exit handlers. So while the stack
    runs, each new actor process (partition owners, dispatchers, the Serve replica) is asked once
    to save every second; before the stack stops, each live one saves a last time and running jobs
    are stopped (their drivers save on SIGTERM). Best effort: it never fails a test."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._seen: set[tuple[str, int | None]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="ray-coverage", daemon=True)

    @classmethod
    def wanted(cls) -> bool:
        return bool(os.environ.get("COVERAGE_PROCESS_CONFIG"))

    def start(self) -> None:
        self._thread.start()

    def stop_polling(self) -> None:
        """Before this process leaves the cluster (ray.shutdown), so no call races it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):
                self._ask(new_only=True)

    def _ask(self, *, new_only: bool) -> list[Any]:
        import ray
        from ray.util.state import list_actors

        if not ray.is_initialized():
            return []
        alive = list_actors(
            address=self.settings.jobs_url,
            filters=[("state", "=", "ALIVE")],
            limit=10_000,
            timeout=10,
            raise_on_missing_output=False,
        )
        calls: list[Any] = []
        for actor in alive:
            key = (actor.actor_id, actor.pid)
            if not actor.name or (new_only and key in self._seen):
                continue
            self._seen.add(key)
            with contextlib.suppress(Exception):
                handle = ray.get_actor(actor.name, namespace=actor.ray_namespace)
                calls.append(handle.__ray_call__.remote(_saver()))
        return calls

    def finish(self, timeout_s: float = 20.0) -> None:
        self.stop_polling()
        try:
            from ray.job_submission import JobSubmissionClient

            from cluster import ray_client

            ray = ray_client.connect(self.settings)  # again, if ray_session left the cluster
            calls = self._ask(new_only=False)
            if calls:
                ray.wait(calls, num_returns=len(calls), timeout=timeout_s)
            jobs = JobSubmissionClient(self.settings.jobs_url)
            running = [
                j.submission_id
                for j in jobs.list_jobs()
                if j.submission_id is not None and not j.status.is_terminal()
            ]
            for job_id in running:
                with contextlib.suppress(Exception):
                    jobs.stop_job(job_id)
            deadline = time.monotonic() + timeout_s
            while running and time.monotonic() < deadline:
                running = [j for j in running if not jobs.get_job_status(j).is_terminal()]
                time.sleep(0.2)
        except Exception as exc:
            warnings.warn(f"coverage of the Ray workers is incomplete: {exc!r}", stacklevel=1)


_ray_coverage: RayCoverage | None = None


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """The running stack's resolved Settings (addresses filled in), for the whole session."""
    state_dir = Path(tempfile.mkdtemp(prefix="esb-test-", dir="/tmp"))
    settings = _test_settings(state_dir)
    global _ray_coverage
    try:
        resolved = local_stack.up(settings, with_api=True)
        if RayCoverage.wanted():  # only under coverage (make test): see RayCoverage
            _ray_coverage = RayCoverage(resolved)
            _ray_coverage.start()
        yield resolved
    finally:
        if _ray_coverage is not None:
            _ray_coverage.finish()
            _ray_coverage = None
        local_stack.down(settings)
        if request.session.testsfailed:
            print(f"\n[esb] test stack logs kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(ray_head.temp_dir(settings), ignore_errors=True)


@pytest.fixture(scope="session")
def ray_session(stack: Settings) -> Iterator[Any]:
    """This test process as a Ray driver of the stack's cluster (ray imported only here)."""
    os.environ.update(ray_client.auth_env(stack))  # drivers must match the head's mode (token)
    import ray

    context = ray.init(
        address=stack.ray_address,
        namespace="esb-tests",
        ignore_reinit_error=True,
        log_to_driver=False,
    )
    yield context
    if _ray_coverage is not None:
        _ray_coverage.stop_polling()
    ray.shutdown()


@pytest.fixture
def unique() -> str:
    """A fresh suffix, so each test has its own streams and topics."""
    return uuid.uuid4().hex[:10]


Mint = Callable[..., str]


@pytest.fixture(scope="session")
def mint(stack: Settings) -> Mint:
    """mint(tenant, role="admin", **grants) -> a bearer token the stack's API accepts."""
    config = auth_config_from(stack)

    def make(tenant: str, role: Role = "admin", ttl_s: int = 3600, **grants: Any) -> str:
        return mint_token(config, tenant, role, f"{role}@{tenant}", ttl_s=ttl_s, **grants)

    return make


@pytest.fixture
def http(stack: Settings, mint: Mint, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """An API client with an admin token of the test module's `TENANT` (default acme)."""
    tenant = getattr(request.module, "TENANT", DEFAULT_TENANT)
    auth = {"Authorization": f"Bearer {mint(tenant)}"}
    with httpx.Client(base_url=stack.api_url, timeout=120, headers=auth) as client:
        yield client
