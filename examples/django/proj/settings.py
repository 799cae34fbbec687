"""Settings of the example project: the database and the queue come from the environment."""

import importlib.util
import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "orders"]
# Results in the project's database (CELERY_RESULT_BACKEND = "django-db") and beat's schedule
# in it, where these packages are installed.
INSTALLED_APPS += [
    name
    for name in ("django_celery_results", "django_celery_beat")
    if importlib.util.find_spec(name) is not None
]
ROOT_URLCONF = "proj.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_schema = os.environ.get("DATABASE_SCHEMA", "")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DATABASE_NAME", "test"),
        "USER": os.environ.get("DATABASE_USER", "postgres"),
        "HOST": os.environ.get("DATABASE_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DATABASE_PORT", "5432"),
        "CONN_MAX_AGE": 60,
        "OPTIONS": {"options": f"-c search_path={_schema}"} if _schema else {},
    }
}

# The queue: every CELERY_* name is a Celery setting (namespace='CELERY' in proj/celery.py).
CELERY_BROKER_URL = os.environ.get("BROKER_URL", "redis://localhost:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("RESULT_BACKEND", "redis://localhost:6379/0")
CELERY_TASK_ACKS_LATE = True
CELERY_TIMEZONE = "UTC"
CELERY_RESULT_EXTENDED = os.environ.get("RESULT_EXTENDED", "") == "1"
