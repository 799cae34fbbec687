"""Seeds 000 and 002 as their users wrote them for Celery (only the imports differ)."""

import os
import time

from celeriac import Celery, Exchange, Queue

app = Celery("tasks", broker=os.environ.get("SEED_BROKER"), backend=os.environ.get("SEED_BACKEND"))
# The tests' Redis results stay under a key prefix of their own (a shared server).
app.conf.result_backend_transport_options = {"global_keyprefix": os.environ.get("SEED_PREFIX", "")}

# seed 002: two exchanges, two queues
default_exchange = Exchange("default", type="direct")
custom_exchange = Exchange("custom", type="direct")
default_queue = Queue("default", exchange=default_exchange, routing_key="default")
high_priority_queue = Queue("high_priority", exchange=custom_exchange, routing_key="high_priority")
app.conf.task_queues = (default_queue, high_priority_queue)
app.conf.task_default_exchange = "default"
app.conf.task_default_exchange_type = "direct"
app.conf.task_default_routing_key = "default"
app.conf.task_default_queue = "default"


@app.task
def add(x, y):  # type: ignore[no-untyped-def]
    return x + y


@app.task
def slow_add(x, y):  # type: ignore[no-untyped-def]
    """Seed 000: the worker takes its time before answering."""
    time.sleep(2)
    return x + y


@app.task
def where(tag):  # type: ignore[no-untyped-def]
    return f"{tag} ran on {os.environ.get('SEED_WORKER', '?')}"


@app.task
def buy_milk(volume):  # type: ignore[no-untyped-def]
    return volume


@app.task
def buy_bread(count):  # type: ignore[no-untyped-def]
    return count


@app.task
def fetch_user_name(id):  # type: ignore[no-untyped-def]
    return f"Пётр {id}Первый"


@app.task
def greeting_user(name):  # type: ignore[no-untyped-def]
    return f"Здравствуй, {name}!"
