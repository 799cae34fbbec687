"""A directed dependency graph, as ``AsyncResult.build_graph()`` returns it.

The same interface as Celery's ``celery.utils.graph.DependencyGraph`` where projects use
it: nodes with the nodes they point to (``graph[node]``), ``topsort()``, ``edges()``,
``valency_of()``, ``connect()`` and ``to_dot()`` (Graphviz text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

__all__ = ["CycleError", "DependencyGraph", "GraphFormatter"]


class CycleError(Exception):
    """The graph has a cycle, so it has no topological order."""


class GraphFormatter:
    """How ``to_dot`` names and draws nodes (override ``label`` to change the text)."""

    def __init__(self, root: Any = None, shape: str = "box", **_: Any) -> None:
        self.root = root
        self.shape = shape

    def label(self, obj: Any) -> str:
        """The text of a node."""
        return str(obj)

    def node(self, obj: Any) -> str:
        """One node line of the dot text."""
        return f'"{self.label(obj)}" [shape={self.shape}];'

    def edge(self, a: Any, b: Any) -> str:
        """One edge line of the dot text (``a`` depends on ``b``)."""
        return f'"{self.label(a)}" -> "{self.label(b)}";'


class DependencyGraph:
    """Nodes and the nodes each one points to, in insertion order."""

    def __init__(
        self, it: Iterable[tuple[Any, Iterable[Any]]] | None = None, formatter: Any = None
    ) -> None:
        self.formatter = formatter or GraphFormatter()
        self.adjacent: dict[Any, list[Any]] = {}
        if it is not None:
            self.update(it)

    def add_arc(self, obj: Any) -> None:
        """Add a node (no edge)."""
        self.adjacent.setdefault(obj, [])

    def add_edge(self, a: Any, b: Any) -> None:
        """Add an edge from ``a`` to ``b`` (``a`` is added as a node if missing)."""
        self.adjacent.setdefault(a, []).append(b)

    def connect(self, graph: DependencyGraph) -> None:
        """Add every node and edge of another graph."""
        for node, targets in graph.adjacent.items():
            self.adjacent.setdefault(node, []).extend(targets)

    def update(self, it: Iterable[tuple[Any, Iterable[Any]]]) -> None:
        """Add ``(node, targets)`` pairs."""
        for node, targets in it:
            self.add_arc(node)
            for target in targets:
                self.add_edge(node, target)

    def edges(self) -> list[Any]:
        """The nodes that point to at least one other node."""
        return [node for node, targets in self.adjacent.items() if targets]

    def valency_of(self, obj: Any) -> int:
        """How many nodes ``obj`` reaches, itself included."""
        seen: set[Any] = set()
        stack = [obj]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.adjacent.get(node, ()))
        return len(seen)

    def topsort(self) -> list[Any]:
        """Every node after the nodes it points to, its dependencies (as Celery's; raises
        CycleError on a cycle)."""
        incoming = dict.fromkeys(self.adjacent, 0)
        for targets in self.adjacent.values():
            for target in targets:
                incoming[target] = incoming.get(target, 0) + 1
        ready = [node for node, count in incoming.items() if count == 0]
        order: list[Any] = []
        while ready:
            node = ready.pop(0)
            order.append(node)
            for target in self.adjacent.get(node, ()):
                incoming[target] -= 1
                if incoming[target] == 0:
                    ready.append(target)
        if len(order) != len(incoming):
            raise CycleError("the graph has a cycle")
        order.reverse()
        return order

    def to_dot(self, fh: IO[str], formatter: Any = None) -> None:
        """Write the graph as Graphviz ``dot`` text to ``fh``."""
        fmt = formatter or self.formatter
        write: Callable[[str], Any] = fh.write
        write("digraph dependencies {\n")
        for node, targets in self.adjacent.items():
            write(f"  {fmt.node(node)}\n")
            for target in targets:
                write(f"  {fmt.edge(node, target)}\n")
        write("}\n")

    def format(self, obj: Any) -> str:
        """The label of a node."""
        return str(self.formatter.label(obj))

    def items(self) -> Iterator[tuple[Any, list[Any]]]:
        """``(node, targets)`` pairs."""
        return iter(self.adjacent.items())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.adjacent)

    def __getitem__(self, node: Any) -> list[Any]:
        return self.adjacent[node]

    def __len__(self) -> int:
        return len(self.adjacent)

    def __contains__(self, obj: object) -> bool:
        return obj in self.adjacent

    def __repr__(self) -> str:
        return "\n".join(f"{self.format(n)}({len(t)})" for n, t in self.adjacent.items())
