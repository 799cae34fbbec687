"""celeriac.signals against Celery's: the same signals and arguments, and the same
``connect``/``disconnect``/``send`` rules (weak references, dispatch_uid, sender)."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from celeriac import Celery, signals
from celeriac.beat.scheduler import Beat
from celeriac.engines.memory.schedules import MemoryState, MemoryStore
from celeriac.signals import Signal

celery_signals = pytest.importorskip("celery.signals")
CelerySignal = pytest.importorskip("celery.utils.dispatch").Signal


def _celery_signal_names() -> set[str]:
    """Every Signal instance in the real celery/signals.py (its __all__ misses three)."""
    return {n for n, v in vars(celery_signals).items() if isinstance(v, CelerySignal)}


def test_every_celery_signal_exists_with_its_arguments() -> None:
    names = _celery_signal_names()
    assert len(names) == 34
    for name in sorted(names):
        ours = getattr(signals, name, None)
        assert isinstance(ours, Signal), name
        assert ours.name == name
        assert ours.providing_args == getattr(celery_signals, name).providing_args, name
    assert set(celery_signals.__all__) <= set(signals.__all__)
    assert names <= set(signals.__all__)


@pytest.fixture(params=["celeriac", "celery"])
def make(request: pytest.FixtureRequest) -> Any:
    """A fresh signal of either implementation: each test below runs on both."""
    cls = Signal if request.param == "celeriac" else CelerySignal
    return lambda: cls(name="probe", providing_args={"x"})


def test_connect_as_decorator_and_send(make: Any) -> None:
    sig = make()
    seen: list[Any] = []

    @sig.connect
    def plain(sender: Any, **kwargs: Any) -> str:
        seen.append(("plain", sender, kwargs["x"], kwargs["signal"] is sig))
        return "ok"

    @sig.connect(sender="only-this")
    def filtered(sender: Any, **kwargs: Any) -> None:
        seen.append(("filtered", sender))

    responses = sig.send(sender="other", x=1)
    sig.send(sender="only-this", x=2)
    assert responses == [(plain, "ok")]
    assert seen == [("plain", "other", 1, True), ("plain", "only-this", 2, True),
                    ("filtered", "only-this")]  # fmt: skip


def test_sender_objects_match_by_identity(make: Any) -> None:
    class Sender:
        name = "same-name"

    sig, first, second = make(), Sender(), Sender()
    seen: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(sender)

    sig.connect(receiver, sender=first)
    sig.send(sender=second)
    sig.send(sender="same-name")
    sig.send(sender=first)
    assert seen == [first]
    assert sig.has_listeners(first) and not sig.has_listeners(second)


def test_weak_receivers_go_away_and_strong_ones_stay(make: Any) -> None:
    sig = make()
    seen: list[str] = []

    def weak(**kwargs: Any) -> None:
        seen.append("weak")

    def strong(**kwargs: Any) -> None:
        seen.append("strong")

    sig.connect(weak)
    sig.connect(strong, weak=False)
    del weak, strong
    gc.collect()
    sig.send(sender=None)
    assert seen == ["strong"]


def test_bound_methods_are_held_weakly_by_their_instance(make: Any) -> None:
    sig = make()
    seen: list[int] = []

    class Listener:
        def __init__(self, n: int) -> None:
            self.n = n

        def on(self, **kwargs: Any) -> None:
            seen.append(self.n)

    kept, dropped = Listener(1), Listener(2)
    sig.connect(kept.on)
    sig.connect(dropped.on)
    del dropped
    gc.collect()
    sig.send(sender=None)
    assert seen == [1]


def test_dispatch_uid_connects_once_and_disconnects(make: Any) -> None:
    sig = make()
    seen: list[str] = []

    def first(**kwargs: Any) -> None:
        seen.append("first")

    def second(**kwargs: Any) -> None:
        seen.append("second")

    sig.connect(first, dispatch_uid="uid")
    sig.connect(second, dispatch_uid="uid")  # same uid: ignored
    sig.connect(first)  # a connection of its own (keyed by the receiver)
    sig.connect(first)  # again: ignored
    sig.send(sender=None)
    assert seen == ["first", "first"]
    assert sig.disconnect(dispatch_uid="uid") is True
    assert sig.disconnect(dispatch_uid="uid") is False
    assert sig.disconnect(first) is True
    seen.clear()
    sig.send(sender=None)
    assert seen == []


def test_disconnect_needs_the_same_sender(make: Any) -> None:
    sig = make()

    def receiver(**kwargs: Any) -> None: ...

    sig.connect(receiver, sender="a")
    assert sig.disconnect(receiver) is False
    assert sig.disconnect(receiver, sender="a") is True


def test_receiver_without_kwargs_is_refused(make: Any) -> None:
    def no_kwargs(sender: Any) -> None: ...

    with pytest.raises(ValueError, match="keyword arguments"):
        make().connect(no_kwargs)


def test_a_failing_receiver_is_logged_and_returned(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sig = make()
    boom = RuntimeError("boom")

    def failing(**kwargs: Any) -> None:
        raise boom

    def after(**kwargs: Any) -> str:
        return "still called"

    sig.connect(failing)
    sig.connect(after)
    with caplog.at_level(logging.ERROR):
        responses = sig.send(sender=None)
    assert responses == [(failing, boom), (after, "still called")]
    assert "boom" in caplog.text


def test_retry_receiver_is_called_until_it_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("celeriac.retry.time.sleep", lambda _s: None)
    sig = Signal(name="probe")
    calls: list[int] = []

    def flaky(**kwargs: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return "done"

    wrapper = sig.connect(flaky, retry=True)
    del flaky
    gc.collect()  # held strongly, as Celery holds a retrying receiver
    assert sig.send(sender=None) == [(wrapper, "done")]
    assert len(calls) == 3


def test_name_alone_is_accepted() -> None:
    assert Signal("mine").name == "mine" and Signal("mine").providing_args == set()


def _recorder(*names: str) -> tuple[list[tuple[str, Any, dict[str, Any]]], list[Any]]:
    calls: list[tuple[str, Any, dict[str, Any]]] = []
    kept = []
    for name in names:

        def receiver(sender: Any = None, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            calls.append((_name, sender, kwargs))

        getattr(signals, name).connect(receiver)
        kept.append((getattr(signals, name), receiver))
    return calls, kept


@pytest.mark.parametrize("embedded", [False, True])
async def test_beat_sends_beat_init_and_beat_embedded_init(embedded: bool) -> None:
    app = Celery("beat-signals", broker="memory://beat-signals", set_as_current=False)
    beat = Beat(app, MemoryStore(namespace="s", state=MemoryState()), [], embedded=embedded)
    calls, kept = _recorder("beat_init", "beat_embedded_init")
    stop = asyncio.Event()
    stop.set()
    try:
        await beat.run(stop)
    finally:
        for signal, receiver in kept:
            signal.disconnect(receiver)
    expected = ["beat_init", "beat_embedded_init"] if embedded else ["beat_init"]
    assert [(name, sender) for name, sender, _ in calls] == [(n, beat) for n in expected]


async def test_after_publish_and_task_sent_have_celerys_arguments() -> None:
    app = Celery("sent", broker=f"memory://sent-{id(object())}", set_as_current=False)

    @app.task
    def mul(x: int, y: int) -> int:
        return x * y

    calls, kept = _recorder("after_task_publish", "task_sent")
    try:
        result = await mul.aapply_async((2, 3), countdown=60)
    finally:
        for signal, receiver in kept:
            signal.disconnect(receiver)
        await app.aclose()
    (_, sender, after), (_, sent_sender, sent) = calls
    assert sender == sent_sender == mul.name
    assert after["body"][:2] == ([2, 3], {}) and after["headers"]["id"] == result.id
    assert set(after) == {"body", "exchange", "routing_key", "headers"}
    assert sent["task_id"] == result.id and (sent["args"], sent["kwargs"]) == ([2, 3], {})
    assert sent["task"] == mul.name and sent["eta"] is not None and sent["taskset"] is None


def test_eager_task_sends_success_with_runtime() -> None:
    app = Celery("eager", broker="memory://eager-signals", set_as_current=False)

    @app.task
    def double(x: int) -> int:
        return 2 * x

    calls, kept = _recorder("task_success")
    try:
        assert double.apply((4,)).get() == 8
    finally:
        for signal, receiver in kept:
            signal.disconnect(receiver)
    [(_, sender, kwargs)] = calls
    assert sender is double and kwargs["result"] == 8
    assert isinstance(kwargs["runtime"], float) and kwargs["runtime"] >= 0
