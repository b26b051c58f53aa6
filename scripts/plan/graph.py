"""The servers' dependency graph (who boots after whom), on the standard library's ``graphlib``.

One implementation for every reader of ``depends_on``: the plan rules (cycles), the activation
engine (refuses a cycle before anything starts) and the run model (dependency levels in reports).
A graph is a mapping ``server -> the servers it depends on``, in the plan's order; upstreams that
are not keys of the mapping (outside an activation's scope, or unknown) are ignored. Nothing here
recurses, so a chain of any length is fine.

A cycle is written in the direction of ``depends_on`` and starts at its member that comes first
in the mapping: ``a -> b -> c -> a`` means a depends on b, b on c, c on a.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter

from drctl.errors import InvalidInput

Graph = Mapping[str, Iterable[str]]


class DependencyCycle(InvalidInput):
    """Servers depend on each other in a cycle: none of them can boot first."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"dependency cycle: {' -> '.join(cycle)} (remove one of these depends_on)")


def _in_scope(graph: Graph) -> dict[str, list[str]]:
    """Each node's upstreams that are nodes of the graph, without repeats, in their order: what
    graphlib takes as the node's predecessors."""
    return {node: [u for u in dict.fromkeys(ups) if u in graph] for node, ups in graph.items()}


def find_cycles(graph: Graph, *, limit: int | None = None) -> list[list[str]]:
    """Cycles of the graph, each once, as ``[a, b, c, a]`` (see the module docstring); at most
    ``limit`` of them. Empty when the graph has none.

    graphlib reports one cycle at a time: each one found is broken at its closing edge (its last
    member's dependency on its first) and the search starts again, so cycles sharing members are
    reported too, and the work stays linear in the graph per cycle found."""
    edges = _in_scope(graph)
    rank = {node: k for k, node in enumerate(edges)}
    found: list[list[str]] = []
    while limit is None or len(found) < limit:
        try:
            TopologicalSorter(edges).prepare()
            break
        except CycleError as e:
            # graphlib lists predecessor before successor: reversed, that is depends_on order.
            ring = list(reversed(e.args[1]))[:-1]
        first = min(range(len(ring)), key=lambda k: rank[ring[k]])
        ring = ring[first:] + ring[:first]
        found.append([*ring, ring[0]])
        last = ring[-1]
        edges[last] = [u for u in edges[last] if u != ring[0]]
    return found


def dependency_levels(graph: Graph) -> dict[str, int]:
    """Level of each node, in the graph's order: 0 without an upstream in the graph, else one more
    than its deepest upstream. Raises :class:`DependencyCycle` naming the members of a cycle."""
    edges = _in_scope(graph)
    try:
        order = list(TopologicalSorter(edges).static_order())
    except CycleError:
        raise DependencyCycle(find_cycles(edges, limit=1)[0]) from None
    levels: dict[str, int] = {}
    for node in order:
        levels[node] = 1 + max((levels[u] for u in edges[node]), default=-1)
    return {node: levels[node] for node in edges}
