"""Owner placement: balanced over the nodes, stable, and moving only what must move."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors.placement import moves, nodes_with_capacity, place

NODES = ["head", "w1", "w2", "w3", "w4"]


@st.composite
def situations(draw: st.DrawFn) -> tuple[int, list[str], dict[int, str]]:
    owners = draw(st.integers(1, 12))
    nodes = draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=5, unique=True))
    current = draw(st.dictionaries(st.integers(0, owners - 1), st.sampled_from(NODES)))
    return owners, nodes, current


@given(situations())
def test_every_owner_gets_a_live_node_and_the_spread_is_even(
    case: tuple[int, list[str], dict[int, str]],
) -> None:
    owners, nodes, current = case
    placed = place(owners, nodes, current)
    assert sorted(placed) == list(range(owners))
    assert set(placed.values()) <= set(nodes)
    counts = [sum(1 for n in placed.values() if n == node) for node in nodes]
    assert max(counts) - min(counts) <= 1


@given(situations())
def test_only_the_surplus_and_the_homeless_move(
    case: tuple[int, list[str], dict[int, str]],
) -> None:
    owners, nodes, current = case
    placed = place(owners, nodes, current)
    homeless = sum(1 for i in range(owners) if current.get(i) not in nodes)
    base, extra = divmod(owners, len(nodes))
    held = sorted((sum(1 for n in current.values() if n == node) for node in nodes), reverse=True)
    surplus = sum(max(0, h - (base + (rank < extra))) for rank, h in enumerate(held))
    assert len(moves(current, placed)) == homeless + surplus
    assert place(owners, nodes, placed) == placed  # nothing moves twice


def test_a_joining_node_takes_a_share_and_a_leaving_one_gives_it_back() -> None:
    alone = place(4, ["head"], {})
    joined = place(4, ["head", "w1"], alone)
    assert sorted(joined.values()) == ["head", "head", "w1", "w1"]
    assert moves(alone, joined) == [2, 3]
    assert place(4, ["head"], joined) == alone


def test_nodes_with_capacity_are_alive_ones_with_cpus_head_first() -> None:
    nodes = [
        {"NodeID": "b", "Alive": True, "Resources": {"CPU": 1.0}},
        {"NodeID": "a", "Alive": True, "Resources": {"CPU": 1.0}},
        {"NodeID": "z", "Alive": True, "Resources": {"CPU": 2.0, "node:__internal_head__": 1.0}},
        {"NodeID": "dead", "Alive": False, "Resources": {"CPU": 1.0}},
        {"NodeID": "nocpu", "Alive": True, "Resources": {"memory": 1.0}},
    ]
    assert nodes_with_capacity(nodes) == ["z", "a", "b"]
