"""Typed tasks, checked by mypy (not run): tests/typing/test_typing.py runs mypy on this file.

A line whose comment is ``R: <type>`` must make mypy reveal that type; a line whose
comment is ``E: <code>`` must be an error with that code; no other line may have an error.
"""

from __future__ import annotations

from typing import Any, reveal_type

from celeriac import Celery, Task, shared_task
from celeriac.canvas.signature import Signature
from celeriac.result import AsyncResult, EagerResult

app = Celery("typed", broker="memory://")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=2)
def bound(self: Task, name: str) -> str:
    return f"{self.name}:{name}"


@app.task(queue="slow", ignore_result=False)
def with_options(text: str, times: int = 2) -> list[str]:
    return [text] * times


@shared_task
def shared(x: float) -> float:
    return x * 2


@shared_task(bind=True)
def shared_bound(self: Task, x: int) -> None:
    return None


@app.task
async def fetch(url: str) -> bytes:
    return url.encode()


@app.task(bind=True)
async def fetch_bound(self: Task, url: str) -> bytes:
    return url.encode()


class ContextTask(Task):
    """A base class wrapping every run (Flask's recipe): an untyped ``__call__`` is fine."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)


@app.task(base=ContextTask)
def in_context(x: int) -> int:
    return x


BIND = True


@app.task(bind=BIND)
def bound_by_a_variable(self: Task, x: int) -> int:
    return x


def untyped_use(task: Task) -> AsyncResult:
    """A bare Task takes anything and gives an AsyncResult of anything."""
    return task.delay(1, "two", three=3)


# correct usages ------------------------------------------------------------------------------
reveal_type(add)  # R: celeriac.task.Task[[x: int, y: int], int]
reveal_type(add(1, 2))  # R: int
reveal_type(add.delay(1, 2))  # R: celeriac.result.AsyncResult[int]
reveal_type(add.delay(1, 2).get())  # R: int
reveal_type(add.delay(1, y=2).get(timeout=5))  # R: int
reveal_type(add.apply_async((1, 2), countdown=1))  # R: celeriac.result.AsyncResult[int]
reveal_type(add.apply((1, 2)))  # R: celeriac.result.EagerResult[int]
reveal_type(add.s(1, 2))  # R: celeriac.canvas.signature.Signature
reveal_type(add.si(1, 2))  # R: celeriac.canvas.signature.Signature
reveal_type(add.AsyncResult("some-id"))  # R: celeriac.result.AsyncResult[int]
reveal_type(bound("x"))  # R: str
reveal_type(bound.delay("x").get())  # R: str
reveal_type(with_options.delay("a").get())  # R: list[str]
reveal_type(with_options.delay("a", times=3))  # R: celeriac.result.AsyncResult[list[str]]
reveal_type(shared.delay(1.5).get())  # R: float
reveal_type(shared_bound.delay(1))  # R: celeriac.result.AsyncResult[None]
reveal_type(untyped_use(add).get())  # R: Any
reveal_type(fetch.delay("u").get())  # R: bytes
reveal_type(fetch_bound.delay("u").get())  # R: bytes
reveal_type(in_context.delay(1).get())  # R: int
reveal_type(bound_by_a_variable.delay(1))  # R: celeriac.result.AsyncResult[Any]


async def in_async_code() -> None:
    result = await add.adelay(1, 2)
    reveal_type(result)  # R: celeriac.result.AsyncResult[int]
    reveal_type(await result.aget())  # R: int
    reveal_type(await fetch("u"))  # R: bytes


signature: Signature = add.s(1)
eager: EagerResult[int] = add.apply((1, 2))
anything: Any = add.delay(1, 2).get()

# wrong usages: each line must be reported ---------------------------------------------------------
add.delay("x", 2)  # E: arg-type
add.delay(1)  # E: call-arg
add.delay(1, 2, 3)  # E: call-arg
add.delay(1, z=2)  # E: call-arg
add("1", "2")  # E: arg-type
text: str = add.delay(1, 2).get()  # E: assignment
bound.delay(1)  # E: arg-type
bound.delay("x", "y")  # E: call-arg
with_options.delay("a", times="3")  # E: arg-type
shared.delay("1.5")  # E: arg-type
shared_bound.delay()  # E: call-arg
number: int = with_options("a")  # E: assignment
fetch.delay(b"u")  # E: arg-type
fetch_bound.delay()  # E: call-arg
in_context.delay("1")  # E: arg-type
