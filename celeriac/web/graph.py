"""A workflow drawn as a graph: one box per task coloured by its state, laid out by depth.

:func:`layout` places the trees of :func:`celeriac.web.workflows.workflow_of`: a task one
row below the task that sent it (depth 0: the root and any task whose parent the dashboard
does not hold), the tasks of a row left to right in the trees' order (a parent's children
together, by time received), each row centred. Edges go from parent to child. A chord's
body is sent by the last of its header's tasks to finish, so the events make it that
task's child; the events do not name the chord, so a task is drawn as *joining* its
parent's group (an edge from every member, class ``join``) when that parent has siblings,
all of them finished, and it was the last of them to finish. A chain inside a group whose
last link happens to finish last looks the same to the events, and is drawn the same.

:func:`graph_svg` draws a layout as an inline SVG (server-rendered, no script, no build
step): boxes link to the task pages, their class names the state (``state-SUCCESS``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from celeriac.events.state import Task
    from celeriac.web.workflows import Node

__all__ = ["BOX_HEIGHT", "BOX_WIDTH", "Edge", "Layout", "Placed", "graph_svg", "layout"]

BOX_WIDTH = 168
BOX_HEIGHT = 44
GAP_X = 24
GAP_Y = 36
MARGIN = 8
_READY = frozenset({"SUCCESS", "FAILURE", "REVOKED", "REJECTED"})


@dataclass(frozen=True)
class Placed:
    """One task's box: top-left corner ``(x, y)``, its row (depth) and column."""

    uuid: str
    name: str
    state: str
    depth: int
    column: int
    x: float
    y: float


@dataclass(frozen=True)
class Edge:
    """An arrow from the task ``source`` to ``target``: ``child`` (sent it) or ``join``
    (a chord's header task to its body)."""

    source: str
    target: str
    kind: str


@dataclass(frozen=True)
class Layout:
    """The boxes and edges of one workflow, and the size they take."""

    nodes: list[Placed]
    edges: list[Edge]
    width: float
    height: float


def layout(trees: Sequence[Node]) -> Layout:
    """Boxes by depth and edges for ``trees``."""
    rows: list[list[Task]] = []
    edges: list[Edge] = []

    def visit(node: Node, depth: int, siblings: Sequence[Node]) -> None:
        if len(rows) <= depth:
            rows.append([])
        rows[depth].append(node.task)
        for child in node.children:
            if _joins(node, siblings):
                edges.extend(Edge(_id(other.task), _id(child.task), "join") for other in siblings)
            else:
                edges.append(Edge(_id(node.task), _id(child.task), "child"))
        for child in node.children:
            visit(child, depth + 1, node.children)

    for top in trees:
        visit(top, 0, trees)
    widest = max((len(row) for row in rows), default=0)
    width = 2 * MARGIN + widest * BOX_WIDTH + max(widest - 1, 0) * GAP_X
    placed = []
    for depth, row in enumerate(rows):
        used = len(row) * BOX_WIDTH + (len(row) - 1) * GAP_X
        left = (width - used) / 2
        for column, task in enumerate(row):
            x = left + column * (BOX_WIDTH + GAP_X)
            y = MARGIN + depth * (BOX_HEIGHT + GAP_Y)
            placed.append(Placed(_id(task), task.name or "task", task.state, depth, column, x, y))
    height = 2 * MARGIN + len(rows) * BOX_HEIGHT + max(len(rows) - 1, 0) * GAP_Y
    return Layout(placed, edges, width, height)


def _id(task: Task) -> str:
    return str(task.uuid)


def _finished_at(task: Task) -> float | None:
    if task.state not in _READY:
        return None
    when = task.succeeded or task.failed or task.revoked or task.rejected or task.timestamp
    return float(when) if isinstance(when, int | float) else None


def _joins(node: Node, siblings: Sequence[Node]) -> bool:
    """Whether ``node``'s children join its group: ``node`` finished last of 2 or more."""
    if len(siblings) < 2 or not any(sibling is node for sibling in siblings):
        return False
    times = [_finished_at(sibling.task) for sibling in siblings]
    mine = _finished_at(node.task)
    if mine is None or any(when is None for when in times):
        return False
    return mine >= max(when for when in times if when is not None)


def graph_svg(drawn: Layout, root: str = "") -> Markup:
    """``drawn`` as an SVG; each box links to ``{root}/task/<id>``."""
    where = {node.uuid: node for node in drawn.nodes}
    lines = []
    for edge in drawn.edges:
        start, end = where.get(edge.source), where.get(edge.target)
        if start is None or end is None:
            continue
        x1, y1 = start.x + BOX_WIDTH / 2, start.y + BOX_HEIGHT
        x2, y2 = end.x + BOX_WIDTH / 2, end.y
        lines.append(
            f'<line class="edge {escape(edge.kind)}" data-from="{escape(edge.source)}"'
            f' data-to="{escape(edge.target)}" x1="{x1:.1f}" y1="{y1:.1f}"'
            f' x2="{x2:.1f}" y2="{y2:.1f}" marker-end="url(#arrow)"/>'
        )
    boxes = [_box(node, root) for node in drawn.nodes]
    arrow = (
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z"/></marker></defs>'
    )
    return Markup(
        f'<svg class="workflow" role="img" aria-label="workflow graph"'
        f' width="{drawn.width:.0f}" height="{drawn.height:.0f}"'
        f' viewBox="0 0 {drawn.width:.0f} {drawn.height:.0f}">'
        f"{arrow}{''.join(lines)}{''.join(boxes)}</svg>"
    )


def _box(node: Placed, root: str) -> str:
    name = node.name if len(node.name) <= 22 else "…" + node.name[-21:]
    return (
        f'<a href="{escape(root)}/task/{escape(node.uuid)}">'
        f'<g class="node state-{escape(node.state)}" data-id="{escape(node.uuid)}"'
        f' data-state="{escape(node.state)}" transform="translate({node.x:.1f},{node.y:.1f})">'
        f"<title>{escape(node.name)} {escape(node.uuid)}: {escape(node.state)}</title>"
        f'<rect width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="5"/>'
        f'<text class="name" x="8" y="18">{escape(name)}</text>'
        f'<text class="state" x="8" y="35">{escape(node.state)}</text></g></a>'
    )
