"""DispatcherLauncher: starts, stops and checks a subscription's dispatcher actors on the Ray
cluster (joining it first when this process is not a Ray driver or worker yet).

Each dispatcher is a detached, named actor (`naming.dispatcher_name`) in the bus's namespace;
its Settings come from the runtime_env this launcher gives it (`cluster.settings.worker_env`).
The subscription service takes any object with these three methods, so tests can pass a fake.
"""

from __future__ import annotations

import contextlib
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.dispatcher import DispatcherActor
from cluster import naming, ray_client
from cluster.models.subscriptions import SubscriptionRecord
from cluster.settings import Settings, worker_env


def on_node(node_id: str) -> NodeAffinitySchedulingStrategy:
    """Run on that node; soft, so a node lost meanwhile means another node, not no actor (a
    restart by Ray keeps the strategy)."""
    return NodeAffinitySchedulingStrategy(node_id, soft=True)


def stop_one(name: str, timeout_s: float = 30.0) -> bool:
    """Stop the named actor (a dispatcher, the indexer) through its stop(), then kill it; False
    when there was none."""
    try:
        actor = ray.get_actor(name, namespace=naming.RAY_NAMESPACE)
    except ValueError:
        return False
    with contextlib.suppress(Exception):  # a dead or stuck actor is killed anyway
        ray.get(actor.stop.remote(), timeout=timeout_s)
    ray.kill(actor, no_restart=True)
    return True


def wait_name_free(name: str, deadline_s: float = 30.0) -> None:
    """A killed actor's name is released asynchronously; reuse it once it is gone."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            ray.get_actor(name, namespace=naming.RAY_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.2)


class DispatcherLauncher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def start(self, record: SubscriptionRecord) -> None:
        ray_client.connect(self._settings)
        for index in range(record.dispatchers):
            self.start_one(record, index)

    def start_one(self, record: SubscriptionRecord, index: int, node_id: str | None = None) -> None:
        """Dispatcher `index` of the subscription (unless it runs), on `node_id` if given."""
        placed = {} if node_id is None else {"scheduling_strategy": on_node(node_id)}
        DispatcherActor.options(  # type: ignore[attr-defined]
            name=naming.dispatcher_name(record.subscription_id, index),
            namespace=naming.RAY_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            runtime_env={"env_vars": worker_env(self._settings)},
            **placed,
        ).remote(record.model_dump(mode="json"), index)

    def stop(self, record: SubscriptionRecord) -> None:
        ray_client.connect(self._settings)
        for index in range(record.dispatchers):
            stop_one(naming.dispatcher_name(record.subscription_id, index))

    def alive(self, record: SubscriptionRecord) -> list[bool]:
        ray = ray_client.connect(self._settings)
        found = []
        for index in range(record.dispatchers):
            try:
                actor = ray.get_actor(
                    naming.dispatcher_name(record.subscription_id, index), naming.RAY_NAMESPACE
                )
                found.append(bool(ray.get(actor.running.remote(), timeout=5)))
            except Exception:
                found.append(False)
        return found
