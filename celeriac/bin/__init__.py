"""``celeriac.bin``: the command line under Celery's module names (``celery.bin``).

``from celeriac.bin.celery import celery, main`` gives the ``celeriac`` command's click
group and entry point, for projects that embed or extend Celery's command line.
The commands themselves live in :mod:`celeriac.cli`.
"""

__all__: list[str] = []
