"""Optional task classes and test helpers under Celery's ``celery.contrib`` import paths."""
