"""Utilities under Celery's ``celery.utils`` import paths."""
