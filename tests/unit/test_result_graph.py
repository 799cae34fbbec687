"""``celeriac.utils.graph.DependencyGraph``, compared with Celery's where they overlap."""

from __future__ import annotations

import io
from typing import Any

import pytest

from celeriac.utils.graph import CycleError, DependencyGraph


def _celery_graph() -> Any:
    graph_module = pytest.importorskip("celery.utils.graph")
    return graph_module.DependencyGraph


EDGES = [("a", ["b", "c"]), ("b", ["d"]), ("c", ["d"]), ("d", [])]


@pytest.mark.parametrize("make", [lambda: DependencyGraph, _celery_graph], ids=["ours", "celery"])
def test_same_answers_as_celery(make: Any) -> None:
    graph = make()(EDGES)
    order = graph.topsort()
    # Dependencies first: a node after every node it points to.
    assert order.index("d") < order.index("b") < order.index("a")
    assert order.index("d") < order.index("c") < order.index("a")
    assert (len(graph), "a" in graph, sorted(graph["a"]), graph.valency_of("a")) == (
        4,
        True,
        ["b", "c"],
        4,
    )


def test_cycles_and_dot_text() -> None:
    graph = DependencyGraph([("x", ["y"]), ("y", ["x"])])
    with pytest.raises(CycleError):
        graph.topsort()
    out = io.StringIO()
    DependencyGraph(EDGES).to_dot(out)
    text = out.getvalue()
    assert text.startswith("digraph") and '"a" -> "b";' in text and text.count("->") == 4
