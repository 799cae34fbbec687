"""The application's head: send 2 + 2 to a worker, wait for the answer, print it."""

from __future__ import annotations

from celery_dao.tasks import add

__all__ = ["main"]


def main() -> None:
    result = add.delay(2, 2)
    print(f"sent add(2, 2) as {result.id}; waiting for a worker...")
    print(f"2 + 2 = {result.get(timeout=120)}")


if __name__ == "__main__":
    main()
