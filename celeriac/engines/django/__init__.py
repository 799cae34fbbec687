"""django-celery-results' tables as a result backend (``result_backend = "django-db"``)."""
