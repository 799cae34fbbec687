"""The workflow graph's layout: rows by depth, columns in the trees' order, each row centred;
parent to child edges for a chain and a group, every header task joining a chord's body; and
the SVG has a box per task with its state and a line per edge."""

from __future__ import annotations

import re

from celeriac.events.state import State
from celeriac.web.graph import BOX_HEIGHT, BOX_WIDTH, GAP_X, GAP_Y, MARGIN, graph_svg, layout
from celeriac.web.workflows import workflow_of

ROOT = "root"


def events(state: State, uuid: str, parent: str | None, *, at: float, done: float | None,
           state_name: str = "SUCCESS") -> None:  # fmt: skip
    """A task of workflow ROOT received at ``at`` and (unless ``done`` is None) finished."""
    state.event({"type": "task-received", "uuid": uuid, "name": f"t.{uuid}", "root_id": ROOT,
                 "parent_id": parent, "timestamp": at, "hostname": "w"})  # fmt: skip
    if done is not None:
        kind = "task-succeeded" if state_name == "SUCCESS" else "task-failed"
        state.event({"type": kind, "uuid": uuid, "timestamp": done, "hostname": "w"})


def positions(state: State) -> dict[str, tuple[int, int, float, float]]:
    drawn = layout(workflow_of(state, ROOT))
    return {node.uuid: (node.depth, node.column, node.x, node.y) for node in drawn.nodes}


def edges(state: State) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.kind) for e in layout(workflow_of(state, ROOT)).edges}


def test_a_chain_is_a_column_of_boxes_one_row_per_link() -> None:
    state = State()
    events(state, ROOT, None, at=1, done=2)
    events(state, "b", ROOT, at=3, done=4)
    events(state, "c", "b", at=5, done=None)
    drawn = layout(workflow_of(state, ROOT))
    assert drawn.width == 2 * MARGIN + BOX_WIDTH
    assert drawn.height == 2 * MARGIN + 3 * BOX_HEIGHT + 2 * GAP_Y
    assert positions(state) == {
        ROOT: (0, 0, MARGIN, MARGIN),
        "b": (1, 0, MARGIN, MARGIN + BOX_HEIGHT + GAP_Y),
        "c": (2, 0, MARGIN, MARGIN + 2 * (BOX_HEIGHT + GAP_Y)),
    }
    assert edges(state) == {(ROOT, "b", "child"), ("b", "c", "child")}
    assert [node.state for node in drawn.nodes] == ["SUCCESS", "SUCCESS", "RECEIVED"]


def test_a_group_is_a_row_under_its_parent_centred() -> None:
    state = State()
    events(state, ROOT, None, at=1, done=2)
    for n, member in enumerate(("g1", "g2", "g3")):
        events(state, member, ROOT, at=3 + n, done=10 + n)
    found = positions(state)
    width = 2 * MARGIN + 3 * BOX_WIDTH + 2 * GAP_X
    assert layout(workflow_of(state, ROOT)).width == width
    assert found[ROOT][:2] == (0, 0) and found[ROOT][2] == (width - BOX_WIDTH) / 2
    row_y = MARGIN + BOX_HEIGHT + GAP_Y
    assert [found[m] for m in ("g1", "g2", "g3")] == [
        (1, n, MARGIN + n * (BOX_WIDTH + GAP_X), row_y) for n in range(3)
    ]
    assert edges(state) == {(ROOT, m, "child") for m in ("g1", "g2", "g3")}  # nobody joins


def test_a_chords_body_is_joined_by_every_header_task() -> None:
    state = State()
    events(state, ROOT, None, at=1, done=2)
    events(state, "h1", ROOT, at=3, done=9, state_name="FAILURE")
    events(state, "h2", ROOT, at=3, done=12)  # the last to finish: it sent the body
    events(state, "h3", ROOT, at=3, done=7)
    events(state, "body", "h2", at=13, done=14)
    found = positions(state)
    assert found["body"][:2] == (2, 0)
    assert edges(state) == {(ROOT, h, "child") for h in ("h1", "h2", "h3")} | {
        (h, "body", "join") for h in ("h1", "h2", "h3")
    }
    svg = str(graph_svg(layout(workflow_of(state, ROOT)), "/dash"))
    assert re.findall(r'<g class="node state-(\w+)" data-id="(\w+)"', svg) == [
        ("SUCCESS", ROOT), ("FAILURE", "h1"), ("SUCCESS", "h2"), ("SUCCESS", "h3"),
        ("SUCCESS", "body"),
    ]  # fmt: skip
    assert svg.count('<line class="edge child"') == 3 and svg.count('class="edge join"') == 3
    assert 'href="/dash/task/body"' in svg


def test_a_chain_link_under_a_group_member_still_running_is_not_a_join() -> None:
    state = State()
    events(state, ROOT, None, at=1, done=2)
    events(state, "a", ROOT, at=3, done=4)
    events(state, "other", ROOT, at=3, done=None)  # not finished: a cannot be the last
    events(state, "next", "a", at=5, done=None)
    assert ("a", "next", "child") in edges(state)
    assert not any(kind == "join" for _, _, kind in edges(state))


def test_names_are_escaped_and_long_ones_shortened() -> None:
    state = State()
    state.event({"type": "task-received", "uuid": ROOT, "name": "<b>" + "x" * 40,
                 "root_id": ROOT, "timestamp": 1, "hostname": "w"})  # fmt: skip
    svg = str(graph_svg(layout(workflow_of(state, ROOT))))
    assert "<b>" not in svg and "&lt;b&gt;" in svg  # in the title, whole and escaped
    assert "…" + "x" * 21 in svg
