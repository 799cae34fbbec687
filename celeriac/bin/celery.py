"""``celeriac.bin.celery``: the command's click group and entry point (``celery.bin.celery``)."""

from celeriac.cli.main import cli as celery
from celeriac.cli.main import main

__all__ = ["celery", "main"]
