"""Extra Ray worker nodes for tests: a node joins the session stack's head for the length of a
`with` block (cluster.stack.ray_worker: `ray start --address`, its own session, stopped by pid).

    with extra_ray_node(stack) as node:
        node.node_id      # Ray's hex node id, as ray.nodes() / the state API list it
        node.remove()     # SIGTERM/SIGKILL by pid, then wait until Ray marks the node DEAD
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cluster.settings import Settings
from cluster.stack import processes, ray_worker
from cluster.stack.processes import ProcessRecord

JOIN_TIMEOUT_S = 120.0
DEAD_TIMEOUT_S = 90.0  # a SIGKILLed raylet is declared dead only after missed health checks
_indices = itertools.count(101)  # apart from `esb up --ray-workers` numbering (1, 2, ...)


@dataclass
class ExtraNode:
    """One worker node of the test session's cluster."""

    record: ProcessRecord
    node_id: str
    removed: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.record.pid

    def remove(self) -> None:
        """Stop the node's processes and wait until the head lists it DEAD (idempotent)."""
        if self.removed:
            return
        ray_worker.stop(self.record)
        self.removed = True
        gone = processes.wait_for(
            lambda: ray_worker.node_state(self.record, self.node_id) == "DEAD",
            timeout_s=DEAD_TIMEOUT_S,
            interval_s=0.5,
        )
        assert gone, f"Ray still lists node {self.node_id} as not DEAD {DEAD_TIMEOUT_S}s later"


@contextmanager
def extra_ray_node(
    stack: Settings, num_cpus: int = 1, resources: dict[str, float] | None = None
) -> Iterator[ExtraNode]:
    """A worker node joining stack.ray_address, ALIVE in Ray when the block starts, removed
    (and DEAD in Ray) when it ends if the block did not remove it. `resources`: custom Ray
    resources of the node, to pin work onto it."""
    assert stack.ray_address, "extra_ray_node needs the session stack's Ray head"
    record = ray_worker.join(
        stack,
        stack.ray_address,
        next(_indices),
        num_cpus,
        resources,
        progress=lambda _line: None,
        timeout_s=JOIN_TIMEOUT_S,
    )
    node_id = ray_worker.node_id(record)
    if node_id is None:
        ray_worker.stop(record)
        raise AssertionError("the extra Ray node joined but Ray does not list its node id")
    node = ExtraNode(record, node_id)
    try:
        yield node
    finally:
        node.remove()
