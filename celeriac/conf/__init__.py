"""Settings under Celery's names."""

from celeriac.conf.settings import Settings, normalize_key

__all__ = ["Settings", "normalize_key"]
