"""The event store's indexer on Ray: a thin shell around cluster.services.indexing.EventIndexer.

One detached, named actor (`esb-indexer` in namespace `esb`, num_cpus=0: it waits on Kafka and
Redis), max_restarts=-1, running the indexer in a thread from its constructor; Ray restarts a
killed one, which resumes from the group's committed offsets. `serve.deploy.start_api` ensures
it runs whenever the API is deployed (so `esb up` and the test stack always have one), and the
event store's rebuild restarts it (IndexerLauncher is the `Indexers` it is given).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import ray

from actors.launcher import stop_one
from cluster import naming, ray_client
from cluster.services.indexing import EventIndexer
from cluster.settings import Settings, get_settings, worker_env


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class IndexerActor:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._indexer = EventIndexer(get_settings())
        self._thread = threading.Thread(
            target=self._indexer.run, args=(self._stop,), name="esb-indexer", daemon=True
        )
        self._thread.start()

    def status(self) -> dict[str, Any]:
        return {**self._indexer.status(), "running": self._thread.is_alive()}

    def stop(self) -> bool:
        self._stop.set()
        self._thread.join(timeout=30)
        with contextlib.suppress(Exception):
            self._indexer.close()
        return True


class IndexerLauncher:
    """Starts and stops the indexer actor (joining the Ray cluster first when needed)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def start(self) -> None:
        ray_client.connect(self._settings)
        IndexerActor.options(  # type: ignore[attr-defined]
            name=naming.INDEXER_NAME,
            namespace=naming.RAY_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            runtime_env={"env_vars": worker_env(self._settings)},
        ).remote()

    def stop(self) -> None:
        ray_client.connect(self._settings)
        stop_one(naming.INDEXER_NAME, timeout_s=60)

    def status(self) -> dict[str, Any] | None:
        rt = ray_client.connect(self._settings)
        try:
            actor = rt.get_actor(naming.INDEXER_NAME, naming.RAY_NAMESPACE)
            found: dict[str, Any] = rt.get(actor.status.remote(), timeout=30)
            return found
        except Exception:
            return None
