"""Seed 000: an installable package with two heads (``python -m celery_dao`` and its worker)."""
