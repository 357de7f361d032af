"""A layered layout for the service map (pure: ids and edges in, coordinates out).

Callers on the left, what they call to the right: each node's layer is the longest path to it
from a node nothing calls (cycles are broken by reversing the edges that close them); within a
layer, nodes are ordered by the mean position of their neighbours, sweeping left to right and
back a few times, which keeps crossings few for graphs of dozens of nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Layout", "layered_layout"]

COLUMN = 380
ROW = 60
NODE_W = 200
NODE_H = 40
MARGIN = 16
SWEEPS = 6


@dataclass
class Layout:
    """Node positions (top-left corners), the layer of each node and the drawing's size."""

    positions: dict[str, tuple[float, float]]
    layers: dict[str, int]
    width: float
    height: float
    node_w: float = NODE_W
    node_h: float = NODE_H


def _acyclic(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The edges with those that close a cycle reversed (found by a depth-first search)."""
    out_edges: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a != b:
            out_edges[a].append(b)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[str, str]] = set()
    for root in nodes:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            children = out_edges[node]
            if i < len(children):
                stack[-1] = (node, i + 1)
                child = children[i]
                seen = state.get(child)
                if seen is None:
                    state[child] = 1
                    stack.append((child, 0))
                elif seen == 1:
                    back.add((node, child))
            else:
                state[node] = 2
                stack.pop()
    return [(b, a) if (a, b) in back else (a, b) for a, b in edges if a != b]


def layered_layout(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> Layout:
    """Positions for ``nodes`` (in a stable order: the order given breaks ties) so that
    ``edges`` run left to right where they can."""
    known = set(nodes)
    edges = [(a, b) for a, b in edges if a in known and b in known]
    dag = _acyclic(nodes, edges)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in dict.fromkeys(dag):
        preds[b].append(a)
        succs[a].append(b)
    # Longest path from a source (Kahn's order).
    indegree = {n: len(preds[n]) for n in nodes}
    ready = [n for n in nodes if indegree[n] == 0]
    layer = {n: 0 for n in nodes}
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in succs[node]:
            layer[child] = max(layer[child], layer[node] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    # A source feeding only deep layers moves right, next to what it feeds.
    for node in reversed(order):
        if preds[node] or not succs[node]:
            continue
        layer[node] = max(layer[node], min(layer[c] for c in succs[node]) - 1)
    count = max(layer.values(), default=-1) + 1
    columns: list[list[str]] = [[] for _ in range(count)]
    for node in nodes:
        columns[layer[node]].append(node)
    position = {}
    for column in columns:
        for i, node in enumerate(column):
            position[node] = float(i)

    def sweep(column: list[str], neighbours: dict[str, list[str]]) -> None:
        def key(item: tuple[int, str]) -> tuple[float, int]:
            i, node = item
            near = neighbours[node]
            if not near:
                return (float(i), i)
            return (sum(position[x] for x in near) / len(near), i)

        column[:] = [n for _i, n in sorted(enumerate(column), key=key)]
        for i, node in enumerate(column):
            position[node] = float(i)

    for _ in range(SWEEPS):
        for column in columns[1:]:
            sweep(column, preds)
        for column in reversed(columns[:-1]):
            sweep(column, succs)
    tallest = max((len(c) for c in columns), default=0)
    positions = {}
    for index, column in enumerate(columns):
        offset = (tallest - len(column)) * ROW / 2.0
        for i, node in enumerate(column):
            positions[node] = (MARGIN + index * COLUMN, MARGIN + offset + i * ROW)
    width = MARGIN * 2 + max(0, count - 1) * COLUMN + NODE_W
    height = MARGIN * 2 + max(0, tallest - 1) * ROW + NODE_H
    return Layout(positions, dict(layer), float(width), float(height))
