"""Signatures: a task name with partial arguments and options, shaped like Celery's dict."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac import _state

if TYPE_CHECKING:
    from celeriac.app import Celery
    from celeriac.result import AsyncResult

__all__ = ["Signature", "maybe_signature", "signature"]


class Signature(dict[str, Any]):
    """``{"task", "args", "kwargs", "options", "subtask_type", "immutable"}``, as on the wire."""

    def __init__(
        self,
        task: str | Mapping[str, Any] | Any = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Celery | None = None,
        **extra_options: Any,
    ) -> None:
        if isinstance(task, Mapping):
            super().__init__(copy.deepcopy(dict(task)))
            self._app = app
            return
        name = task if isinstance(task, str) else getattr(task, "name", None)
        if app is None and task is not None and not isinstance(task, str):
            app = getattr(task, "app", None)
        super().__init__(
            task=name,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            options={**dict(options or {}), **extra_options},
            subtask_type=subtask_type,
            immutable=immutable,
        )
        self._app = app

    # attribute views --------------------------------------------------------------------
    @property
    def app(self) -> Celery:
        """The app used to publish this signature."""
        app: Celery = self._app if self._app is not None else _state.get_current_app()
        return app

    @property
    def name(self) -> str:
        """The task name."""
        return str(self["task"])

    task = name

    @property
    def args(self) -> list[Any]:
        """Partial positional arguments."""
        return list(self.get("args") or [])

    @property
    def kwargs(self) -> dict[str, Any]:
        """Partial keyword arguments."""
        return dict(self.get("kwargs") or {})

    @property
    def options(self) -> dict[str, Any]:
        """Publish options (queue, countdown, link, ...)."""
        opts: dict[str, Any] = self.setdefault("options", {})
        return opts

    @property
    def immutable(self) -> bool:
        """Whether a parent's result is left out of the arguments."""
        return bool(self.get("immutable"))

    @property
    def id(self) -> str | None:
        """The pre-assigned task id, if any."""
        value = self.options.get("task_id")
        return str(value) if value is not None else None

    # building ---------------------------------------------------------------------------
    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any) -> Signature:
        """A copy with extra arguments (prepended unless immutable) and options."""
        sig = Signature(dict(self), app=self._app)
        if not sig.immutable:
            sig["args"] = [*(args or ()), *sig.args]
            sig["kwargs"] = {**sig.kwargs, **dict(kwargs or {})}
        sig["options"] = {**sig.options, **options}
        return sig

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Update options in place; return self."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        """Mark as immutable (``.si()``)."""
        self["immutable"] = immutable

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run ``callback`` with this task's result when it succeeds."""
        self.options.setdefault("link", []).append(dict(callback))
        return callback

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run ``errback`` when this task fails."""
        self.options.setdefault("link_error", []).append(dict(errback))
        return errback

    def on_error(self, errback: Mapping[str, Any]) -> Signature:
        """Like ``link_error`` but returns self, for chaining calls."""
        self.link_error(errback)
        return self

    # running ----------------------------------------------------------------------------
    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Publish this signature (extra args prepended, options merged)."""
        sig = self.clone(args, kwargs, **options)
        task = sig.app.tasks.get(sig.name)
        if task is not None:
            return task.apply_async(sig.args, sig.kwargs, **sig.options)
        return sig.app.send_task(sig.name, sig.args, sig.kwargs, **sig.options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Publish with extra arguments."""
        return self.apply_async(args, kwargs)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Run here (eagerly)."""
        sig = self.clone(args, kwargs, **options)
        return sig.app.get_task(sig.name).apply(sig.args, sig.kwargs, **sig.options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task body directly with partial + given arguments."""
        sig = self.clone(args, kwargs)
        return sig.app.get_task(sig.name)(*sig.args, **sig.kwargs)

    def __repr__(self) -> str:
        args = ", ".join([*(repr(a) for a in self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.name}({args}){'!' if self.immutable else ''}"


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """Create a signature from a name, task or dict (Celery's ``signature``)."""
    if isinstance(varies, Signature):
        return varies
    if isinstance(varies, Mapping):
        return Signature(varies, app=kwargs.get("app"))
    return Signature(varies, *args, **kwargs)


def maybe_signature(value: Any, app: Celery | None = None) -> Signature | None:
    """A Signature from a dict (as found in a message), or None."""
    if value is None:
        return None
    if isinstance(value, Signature):
        return value
    return Signature(dict(value), app=app)
