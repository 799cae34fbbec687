"""Tasks for the SQL result backend worker tests: seed 003 (as written) and a chord's parts.

Broker, backend and default queue come from the environment, so the worker process and
the test's client agree. With ``SQL_CHECK_CAT_OUT`` set, seed 003's periodic
``check_cat`` is scheduled every ``SQL_CHECK_CAT_EVERY`` seconds and appends to that file.
"""

import os
from random import random

from celeriac import Celery
from celeriac.schedules import crontab

app = Celery("sqlapp", broker=os.environ.get("SQL_BROKER"), backend=os.environ.get("SQL_BACKEND"))
app.conf.task_default_queue = os.environ.get("SQL_QUEUE", "celery")
app.conf.beat_lease_seconds = 2.0


@app.on_after_configure.connect
def setup_periodic_tasks(sender, **kwargs):  # type: ignore[no-untyped-def]
    if os.environ.get("SQL_CHECK_CAT_OUT"):
        sender.add_periodic_task(float(os.environ.get("SQL_CHECK_CAT_EVERY", "60")), check_cat.s())
        sender.add_periodic_task(crontab(hour=7, minute=30, day_of_week=1), check_cat.s())


@app.task
def check_cat():  # type: ignore[no-untyped-def]
    verdict = "Кот ничего не сломал." if random() < 0.5 else "Кот что-то сломал..."
    with open(os.environ["SQL_CHECK_CAT_OUT"], "a", encoding="utf-8") as out:
        out.write(verdict + "\n")


@app.task
def buy_milk(volume):  # type: ignore[no-untyped-def]
    print(f"Покупаем {volume} литров молока")
    return volume


@app.task
def buy_bread(count):  # type: ignore[no-untyped-def]
    print(f"Покупаем {count} буханок хлеба")
    return count


@app.task
def fetch_user_name(id):  # type: ignore[no-untyped-def]
    return f"Пётр {id}Первый"


@app.task
def greeting_user(name):  # type: ignore[no-untyped-def]
    return f"Здравствуй, {name}!"


@app.task
def add(x, y):  # type: ignore[no-untyped-def]
    return x + y


@app.task
def xsum(numbers):  # type: ignore[no-untyped-def]
    return sum(numbers)
