"""Side-by-side benchmarks of celeriac against Celery, Dramatiq, Taskiq and Huey.

``python -m benchmarks`` (``make bench``) runs every system on the same Redis, RabbitMQ
and SQLite, with the same parallelism, and prints medians and celeriac/peer ratios; see
docs/benchmarks.md. Benchmarks are never part of the test suite's pass/fail.
"""

__all__: list[str] = []
