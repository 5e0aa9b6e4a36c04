"""Where a pipeline's partition owners run: a balanced spread over the Ray nodes that have
capacity, moving as few owners as possible when nodes join or leave. Pure (no Ray), so the
coordinator in actors.job stays a thin loop around it.

Balanced means every node holds M // N or M // N + 1 of the M owners. The nodes that already
hold the most keep the extra ones, and each node keeps its lowest-numbered owners; so a joining
node takes only the surplus, and a leaving node's owners go to the nodes with room.

>>> place(4, ["a"], {})
{0: 'a', 1: 'a', 2: 'a', 3: 'a'}
>>> place(4, ["a", "b"], {0: "a", 1: "a", 2: "a", 3: "a"})  # b joins: it takes two
{0: 'a', 1: 'a', 2: 'b', 3: 'b'}
>>> place(4, ["a"], {0: "a", 1: "a", 2: "b", 3: "b"})  # b leaves: a takes its owners back
{0: 'a', 1: 'a', 2: 'a', 3: 'a'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def place(owners: int, nodes: Sequence[str], current: Mapping[int, str]) -> dict[int, str]:
    """Owner index -> node id for `owners` owners over `nodes` (not empty), given where they
    run now (`current`: owners on nodes not in `nodes`, or missing, are placed anew)."""
    if not nodes:
        raise ValueError("no node to place owners on")
    held: dict[str, list[int]] = {n: [] for n in nodes}
    for index in sorted(current):
        if index < owners and current[index] in held:
            held[current[index]].append(index)
    base, extra = divmod(owners, len(nodes))
    by_load = sorted(nodes, key=lambda n: (-len(held[n]), nodes.index(n)))
    room = {n: base + (1 if rank < extra else 0) for rank, n in enumerate(by_load)}
    placed: dict[int, str] = {}
    for node in nodes:
        placed.update((index, node) for index in held[node][: room[node]])
    homeless = [i for i in range(owners) if i not in placed]
    for node in nodes:
        free = room[node] - sum(1 for n in placed.values() if n == node)
        for _ in range(free):
            placed[homeless.pop(0)] = node
    return dict(sorted(placed.items()))


def moves(current: Mapping[int, str], target: Mapping[int, str]) -> list[int]:
    """The owners that run somewhere other than their target (those to stop and start again)."""
    return [i for i, node in target.items() if current.get(i) != node]


def nodes_with_capacity(nodes: list[dict[str, Any]]) -> list[str]:
    """Alive Ray nodes (`ray.nodes()` entries) that offer CPUs, the head first, then by id:
    owners take no CPU of their own, but a node without any is not meant to run work."""
    alive = [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    alive.sort(key=lambda n: ("node:__internal_head__" not in n["Resources"], n["NodeID"]))
    return [n["NodeID"] for n in alive]
