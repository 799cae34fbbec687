"""Celery's "Using Celery with Flask" recipe (Flask's docs), with only the import line changed.

The tasks run inside the Flask app's context, so they can read ``current_app.config`` and use
extensions bound to the app (Flask-SQLAlchemy sessions, mail, ...).
"""

import os

from flask import Flask, current_app

from celeriac import Celery, Task


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        GREETING="hello from the Flask config",
        CELERY={
            "broker_url": os.environ.get("BROKER_URL", "redis://localhost"),
            "result_backend": os.environ.get("RESULT_BACKEND", "redis://localhost"),
            "task_ignore_result": False,
        },
    )
    celery_init_app(app)
    return app


flask_app = create_app()
celery_app = flask_app.extensions["celery"]


@celery_app.task
def greet(name: str) -> str:
    """Reads the Flask config: works only inside the app context the task class pushes."""
    return f"{current_app.config['GREETING']}, {name}"
