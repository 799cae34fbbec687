"""Seed 001's project: the app lives in ``proj/celery.py`` and is loaded with the package."""

from proj.celery import app as celery_app

__all__ = ["celery_app"]
