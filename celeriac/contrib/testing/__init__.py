"""Helpers for testing tasks: a test app and an embedded worker (Celery's
``celery.contrib.testing``); the pytest fixtures are in :mod:`celeriac.contrib.pytest`."""
