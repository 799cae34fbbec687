"""Workflows in the dashboard: the tasks of one chain, group or chord, as a graph and a tree.

Every task of a workflow carries its root's id (``root_id``) and the id of the task that
sent it (``parent_id``) in its events. ``/workflow/<root id>`` draws the tasks the
dashboard holds for that root as a tree by parent, each with its state; a chain reads
down the tree, a group's members are siblings, a chord's callback hangs under the task
that completed it. Above the tree, the page draws the same tasks as a graph by depth
(:mod:`celeriac.web.graph`: boxes coloured by state, parent to child edges, a chord's header
joining its body). ``GET /api/workflow/<root id>`` gives the nodes as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from celeriac.events.state import State, Task
from celeriac.web.api import ApiError, dashboard_of, json_response
from celeriac.web.graph import graph_svg, layout
from celeriac.web.pages import render

__all__ = ["Node", "workflow_of", "routes"]


@dataclass
class Node:
    """One task of the workflow and those it sent."""

    task: Task
    children: list[Node] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The node and its subtree as JSON-ready data."""
        task = self.task
        return {
            "uuid": task.uuid,
            "name": task.name,
            "state": task.state,
            "parent_id": task.parent_id,
            "children": [child.as_dict() for child in self.children],
        }


def workflow_of(state: State, root_id: str) -> list[Node]:
    """The trees of the workflow ``root_id``: its root first (when held), then any task
    whose parent the dashboard does not hold, each with what it sent, by time received."""
    members = [task for task in list(state.tasks.values()) if root_id in (task.root_id, task.uuid)]
    members.sort(key=lambda task: task.received or task.sent or task.timestamp or 0.0)
    nodes = {task.uuid: Node(task) for task in members}
    tops: list[Node] = []
    for task in members:
        parent = nodes.get(task.parent_id) if task.parent_id != task.uuid else None
        if parent is None:
            tops.append(nodes[task.uuid])
        else:
            parent.children.append(nodes[task.uuid])
    tops.sort(key=lambda node: node.task.uuid != root_id)
    return tops


def _nodes(request: Request) -> tuple[str, list[Node]]:
    root_id = request.path_params["root_id"]
    found = workflow_of(dashboard_of(request).feed.state, root_id)
    if not found:
        raise ApiError(404, f"Unknown workflow '{root_id}'")
    return root_id, found


async def workflow_api(request: Request) -> Response:
    """``GET /api/workflow/<root id>``: ``{"root_id": ..., "trees": [node, ...]}``."""
    root_id, found = _nodes(request)
    return json_response({"root_id": root_id, "trees": [node.as_dict() for node in found]})


async def page(request: Request) -> Response:
    """The workflow's tasks as a graph and a tree, with their states."""
    root_id, found = _nodes(request)
    graph = graph_svg(layout(found), request.scope.get("root_path", ""))
    return render(request, "workflow", "tasks", root_id=root_id, trees=found, graph=graph)


def routes() -> list[Route]:
    """The workflows' API and page routes."""
    return [
        Route("/api/workflow/{root_id}", workflow_api, methods=["GET"]),
        Route("/workflow/{root_id}", page, methods=["GET"]),
    ]
