"""The subscriptions' coordinator: keeps each subscription's dispatchers spread over the Ray
nodes with CPUs (actors.placement), as a pipeline job does with its owners.

One detached actor per cluster (`naming.DISPATCH_COORDINATOR`, num_cpus=0, max_restarts=-1),
started with the API. Every WATCH_S it reads where the dispatchers run (Ray's state API) and
the active push subscriptions (Redis), and moves the surplus of a subscription's dispatchers
onto a node with room: a graceful stop (the cycle in flight commits), then the same named slot
started on the new node. The successor takes the slot's static group membership and
transactional id over, so a dispatcher that did not stop in time is fenced by the broker.
All dispatchers of the cluster are balanced together, oldest subscriptions first: a joining
node takes the newest ones. A lost node needs nothing from here: Ray restarts its dispatchers
elsewhere (max_restarts=-1). Dispatchers of cancelled subscriptions (a cancel that raced a
move) are removed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray
from ray.util.state import list_actors
from redis import Redis

from actors.launcher import DispatcherLauncher, stop_one, wait_name_free
from actors.placement import moves, nodes_with_capacity, place
from cluster import naming
from cluster.models.subscriptions import SubscriptionRecord
from cluster.settings import Settings, get_settings, worker_env

log = logging.getLogger("esb.dispatch_coordinator")
WATCH_S = 5.0


class DispatchCoordinator:
    """The plain class inside DispatchCoordinatorActor (one round per `balance` call)."""

    def __init__(self, settings: Settings) -> None:
        self.redis = Redis.from_url(settings.redis)
        self.launcher = DispatcherLauncher(settings)
        self.moved = 0

    def balance(self) -> int:
        """One round; answers how many dispatchers it moved."""
        nodes = nodes_with_capacity(ray.nodes())
        if not nodes:
            return 0
        running = _running_dispatchers()
        slots: list[tuple[SubscriptionRecord, int, str]] = []  # the running ones, oldest first
        for record, state in self._subscriptions():
            for index in range(record.dispatchers):
                name = naming.dispatcher_name(record.subscription_id, index)
                if name not in running:
                    continue  # stopped, or being (re)started: Ray places it
                if state == "cancelled":
                    _kill(name)
                else:
                    slots.append((record, index, running[name]))
        current = {n: node for n, (_, _, node) in enumerate(slots)}
        target = place(len(slots), nodes, current)
        moving = moves(current, target)
        for n in moving:
            record, index, _ = slots[n]
            self._move(record, index, target[n])
        self.moved += len(moving)
        return len(moving)

    def _subscriptions(self) -> list[tuple[SubscriptionRecord, str]]:
        ids = sorted(m.decode() for m in self.redis.smembers(naming.ALL_SUBSCRIPTIONS))  # type: ignore[union-attr]
        if not ids:
            return []
        raws: Any = self.redis.mget([naming.sub_key(i) for i in ids])
        states: Any = self.redis.mget([naming.sub_key(i, "state") for i in ids])
        found = []
        for raw, state in zip(raws, states, strict=True):
            if raw is None:
                continue
            record = SubscriptionRecord.model_validate_json(raw)
            if record.config.target != "pull":
                found.append((record, (state or b"").decode()))
        return sorted(found, key=lambda f: (f[0].created_at, f[0].subscription_id))

    def _move(self, record: SubscriptionRecord, index: int, node_id: str) -> None:
        name = naming.dispatcher_name(record.subscription_id, index)
        log.info("moving dispatcher %s to node %s", name, node_id)
        _kill(name)
        state = self.redis.get(naming.sub_key(record.subscription_id, "state"))
        if state not in (b"cancelled", None):  # not cancelled (or deleted) while it stopped
            self.launcher.start_one(record, index, node_id)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(WATCH_S):
            try:
                self.balance()
            except Exception:  # the GCS, the state API or Redis away: try again next round
                log.exception("balancing the dispatchers failed")


def _running_dispatchers() -> dict[str, str]:
    """Dispatcher actor name -> the node it runs on."""
    actors = list_actors(
        filters=[("class_name", "=", "DispatcherActor"), ("state", "=", "ALIVE")],
        limit=10_000,
        raise_on_missing_output=False,
    )
    return {a.name: a.node_id for a in actors if a.name and a.node_id}


def _kill(name: str) -> None:
    """Stop the dispatcher (gracefully, then killed) and wait until its name is free."""
    if stop_one(name):
        wait_name_free(name)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class DispatchCoordinatorActor:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._coordinator = DispatchCoordinator(get_settings())
        self._thread = threading.Thread(
            target=self._coordinator.run, args=(self._stop,), name="esb-dispatch-coordinator"
        )
        self._thread.daemon = True
        self._thread.start()

    def moved(self) -> int:
        return self._coordinator.moved


def start_dispatch_coordinator(settings: Settings) -> None:
    """Ensure the cluster's coordinator runs (idempotent)."""
    DispatchCoordinatorActor.options(  # type: ignore[attr-defined]
        name=naming.DISPATCH_COORDINATOR,
        namespace=naming.RAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        runtime_env={"env_vars": worker_env(settings)},
    ).remote()
