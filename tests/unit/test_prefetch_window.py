"""The prefetch window's sizing policy (celeriac.worker.window), on a fake clock."""

from __future__ import annotations

import pytest

from celeriac.worker.window import HORIZON, MOST, PER_SLOT_MOST, PrefetchWindow


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _window(multiplier: int = 4, *, adaptive: bool = True) -> tuple[PrefetchWindow, Clock]:
    clock = Clock()
    return PrefetchWindow(multiplier, adaptive=adaptive, clock=clock), clock


def test_before_any_task_finished_the_window_is_celerys() -> None:
    window, _ = _window()
    assert window.size(2) == 8
    assert window.average is None


def test_short_tasks_grow_the_window_to_its_ceiling() -> None:
    window, _ = _window()
    for _ in range(50):
        window.observe(0.00005)  # a no-op task: 50 us
    assert window.size(2) == 2 * PER_SLOT_MOST
    assert window.peak == 2 * PER_SLOT_MOST


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        (0.001, int(2 * HORIZON / 0.001)),  # 1 ms: 50 ms of work per slot
        (0.005, int(2 * HORIZON / 0.005)),
        (0.0125, 8),  # HORIZON / 4: exactly the fixed window
        (0.5, 8),
        (30.0, 8),
    ],
)
def test_the_window_holds_a_horizon_of_work_per_slot(runtime: float, expected: int) -> None:
    window, _ = _window()
    for _ in range(100):
        window.observe(runtime)
    assert window.size(2) == expected


def test_one_long_task_among_short_ones_shrinks_the_window_at_once() -> None:
    window, _ = _window()
    for _ in range(50):
        window.observe(0.00005)
    window.observe(0.5)
    assert window.size(2) == 8


def test_the_window_grows_back_only_after_many_short_tasks() -> None:
    window, _ = _window()
    window.observe(0.5)
    sizes = []
    for _ in range(80):
        window.observe(0.00005)
        sizes.append(window.size(2))
    assert sizes[0] == 8
    assert sizes == sorted(sizes)  # it grows steadily, never jumps around
    assert sizes[-1] == 2 * PER_SLOT_MOST


def test_no_task_finishing_for_a_horizon_falls_back_to_the_fixed_window() -> None:
    window, clock = _window()
    for _ in range(50):
        window.observe(0.00005)
    assert window.size(2) == 128
    clock.now += HORIZON * 2  # idle, or every slot busy on a long task
    assert window.size(2) == 8
    window.observe(0.00005)  # short tasks again: the average still says so
    assert window.size(2) == 128


def test_the_ceiling_is_bounded_whatever_the_concurrency() -> None:
    window, _ = _window()
    for _ in range(50):
        window.observe(0.0)
    assert window.size(2) == 128
    assert window.size(1000) == MOST
    assert window.ceiling(1000) == MOST


def test_a_large_fixed_window_is_never_shrunk_by_the_ceiling() -> None:
    window, _ = _window(multiplier=100)
    for _ in range(50):
        window.observe(0.0)
    assert window.size(1000) == 100_000  # fixed is the floor


@pytest.mark.parametrize("multiplier", [1, 4, 64])
def test_a_fixed_window_never_adapts(multiplier: int) -> None:
    window, _ = _window(multiplier, adaptive=False)
    for _ in range(50):
        window.observe(0.00005)
    assert window.size(2) == 2 * multiplier
    assert window.average is None


def test_negative_runtimes_count_as_zero() -> None:
    window, _ = _window()
    window.observe(-1.0)
    assert window.average == 0.0


def test_describe_says_how_the_window_is_sized() -> None:
    window, _ = _window()
    for _ in range(50):
        window.observe(0.00005)
    window.size(2)
    described = window.describe(2)
    assert described["adaptive"] is True
    assert (described["fixed"], described["ceiling"]) == (8, 128)
    assert described["current"] == described["peak"] == 128
    assert described["average_runtime"] == pytest.approx(0.00005)
    fixed, _ = _window(adaptive=False)
    assert fixed.describe(2)["ceiling"] == fixed.describe(2)["peak"] == 8
