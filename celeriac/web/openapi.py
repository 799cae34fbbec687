"""The OpenAPI 3.1 schema of the dashboard's API, written as data (``/api/openapi.json``).

A unit test checks that its paths and methods are exactly the app's routes, so the schema
stays true when a route is added or removed.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from celeriac._version import __version__

__all__ = ["SCHEMA", "routes"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_AUTH = {"401": _error("credentials required (when --basic-auth is set)")}
_ACTION_ERRORS = {
    **_AUTH,
    "403": _error("an action without credentials on a dashboard not bound to loopback"),
}
_SUBMIT_ERRORS = {
    **_ACTION_ERRORS,
    "400": _error("body not JSON, args not an array, kwargs not an object, bad option"),
    "413": _error("request body over 1 MiB"),
}
_SUBMIT_BODY = {
    "required": False,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submit"}}},
}


def _control(summary: str, path: str, *query: dict[str, Any]) -> dict[str, Any]:
    """A control action: a POST naming a worker (``name``) or a task (``taskname``)."""
    target = {"name": path, "in": "path", "required": True, "schema": {"type": "string"}}
    return {"post": {
        "summary": summary,
        "parameters": [target, *query],
        "responses": {"200": _json("the worker's answer", "Message"), **_ACTION_ERRORS,
                      "400": _error("a bad or missing parameter"),
                      "404": _error("unknown worker or task"),
                      "403": _error("the worker refused, or an action without credentials"),
                      "503": _error("the broker did not carry the command"),
                      "504": _error("the worker did not answer in time")},
    }}  # fmt: skip


def _submit(summary: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_NAME],
            "requestBody": _SUBMIT_BODY,
            "responses": {"200": _json("published", "Submitted"), **_SUBMIT_ERRORS, **extra},
        }
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


_TASK_LIST_QUERY = [
    _query("limit", {"type": "integer", "minimum": 0}, "at most this many tasks"),
    _query("offset", {"type": "integer", "minimum": 0}, "skip this many tasks first"),
    _query("state", {"type": "string"}, "only tasks in this state (e.g. FAILURE)"),
    _query("workername", {"type": "string"}, "only tasks of this worker"),
    _query("taskname", {"type": "string"}, "only tasks of this name"),
    _query("search", {"type": "string"}, "a piece of the id, name, args, kwargs or result"),
    _query("received_start", {"type": "string"}, "received after (YYYY-MM-DD HH:MM, local)"),
    _query("received_end", {"type": "string"}, "received before (YYYY-MM-DD HH:MM, local)"),
    _query("sort_by", {"type": "string", "enum": [
        "name", "state", "received", "started", "-name", "-state", "-received", "-started"]},
        "sort key (- in front: descending); newest first without it"),
]  # fmt: skip

# fmt: off
_PATHS: dict[str, Any] = {
    "/api/task/async-apply/{name}": _submit(
        "Publish a task registered in the app", {"404": _error("unknown task")}
    ),
    "/api/task/send-task/{name}": _submit("Publish a task by name", {}),
    "/api/task/result/{task_id}": {"get": {
        "summary": "A task's state, and its result once ready (from the result backend)",
        "parameters": [_TASK_ID, _query("timeout", {"type": "number", "minimum": 0,
                       "maximum": 3600}, "wait up to this many seconds for the result")],
        "responses": {"200": _json("the state", "Result"), **_AUTH,
                      "400": _error("bad timeout"), "503": _error("no result backend")},
    }},
    "/api/task/info/{task_id}": {"get": {
        "summary": "What events told of a task",
        "parameters": [_TASK_ID],
        "responses": {"200": _json("the task", "Task"), **_AUTH, "404": _error("unknown task")},
    }},
    "/api/task/revoke/{task_id}": {"post": {
        "summary": "Revoke a task: workers skip it when it comes",
        "parameters": [_TASK_ID, _query("terminate", {"type": "boolean"},
                       "also kill it where it runs"),
                       _query("signal", {"type": "string"}, "with this signal (SIGTERM)")],
        "responses": {"200": _json("revoked", "Message"), **_ACTION_ERRORS,
                      "503": _error("the broker did not take the revoke")},
    }},
    "/api/task/types": {"get": {
        "summary": "Every task name seen",
        "responses": {"200": _json("the names", "TaskTypes"), **_AUTH},
    }},
    "/api/tasks": {"get": {
        "summary": "Tasks by id, filtered and sorted",
        "parameters": _TASK_LIST_QUERY,
        "responses": {"200": _json("tasks by id", "TaskMap"), **_AUTH,
                      "400": _error("bad filter")},
    }},
    "/api/series": {"get": {
        "summary": "Tasks finished and failed, and run-time p50/p95/p99, per minute (last hour)",
        "responses": {"200": _json("one point per minute, oldest first", "Series"), **_AUTH},
    }},
    "/api/workers": {"get": {
        "summary": "The workers events told of",
        "parameters": [
            _query("workername", {"type": "string"}, "only this worker"),
            _query("status", {"type": "boolean"}, "only whether each is alive"),
            _query("refresh", {"type": "boolean"}, "ask the workers' inspect replies again"),
        ],
        "responses": {"200": _json("workers by hostname", "WorkerMap"), **_AUTH,
                      "404": _error("unknown worker"),
                      "503": _error("the broker did not carry the inspection")},
    }},
    "/api/events": {"get": {
        "summary": "Every event as it comes, as server-sent events",
        "parameters": [_query("type", {"type": "string"}, "only types starting with this")],
        "responses": {"200": {"description": "an endless event stream",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      **_AUTH},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics",
        "responses": {"200": {"description": "the text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      **_AUTH},
    }},
    "/api/dead-letters": {"get": {
        "summary": "The messages workers set aside, with the reason, oldest first",
        "parameters": [_query("limit", {"type": "integer", "minimum": 0, "maximum": 10000},
                              "at most this many (100)")],
        "responses": {"200": _json("the dead letters", "DeadLetters"), **_AUTH,
                      "400": _error("bad limit"), "503": _error("the broker did not answer")},
    }},
    "/api/dead-letters/requeue": {"post": {
        "summary": "Put dead letters back on their queues",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Requeue"}}}},
        "responses": {"200": _json("how many were requeued", "Requeued"), **_ACTION_ERRORS,
                      "400": _error("neither ids nor all"), "413": _error("body over 1 MiB"),
                      "503": _error("the broker did not answer")},
    }},
    "/api/dead-letters/purge": {"post": {
        "summary": "Delete dead letters for good",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Requeue"}}}},
        "responses": {"200": _json("how many were deleted", "Purged"), **_ACTION_ERRORS,
                      "400": _error("neither ids nor all"), "413": _error("body over 1 MiB"),
                      "503": _error("the broker did not answer")},
    }},
    "/api/queues": {"get": {
        "summary": "Each queue's depth, consumers, and messages in and out per second",
        "responses": {"200": _json("the queues", "Queues"), **_AUTH,
                      "503": _error("the broker did not answer")},
    }},
    "/api/queues/length": {"get": {
        "summary": "Messages waiting in each queue the workers consume (Flower's)",
        "responses": {"200": _json("the queues", "QueueLengths"), **_AUTH,
                      "503": _error("the broker did not answer")},
    }},
    "/api/schedules": {"get": {
        "summary": "The app's periodic tasks, their last and next runs, the beat holding the lease",
        "responses": {"200": _json("the schedules", "Schedules"), **_AUTH,
                      "400": _error("the app's schedule is wrong"),
                      "503": _error("the beat store did not answer")},
    }},
    "/api/workflow/{root_id}": {"get": {
        "summary": "The tasks of one workflow (chain, group, chord) as trees by parent",
        "parameters": [{"name": "root_id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": _json("the workflow", "Workflow"), **_AUTH,
                      "404": _error("no task of that workflow is known")},
    }},
    "/api/worker/shutdown/{name}": _control("Shut the worker down (warm)", "name"),
    "/api/worker/pool/restart/{name}": _control("Restart the pool (not offered: 403)", "name"),
    "/api/worker/pool/grow/{name}": _control(
        "Add processes to the pool", "name", _query("n", {"type": "integer"}, "how many (1)")),
    "/api/worker/pool/shrink/{name}": _control(
        "Take processes from the pool", "name",
        _query("n", {"type": "integer"}, "how many (1)")),
    "/api/worker/pool/autoscale/{name}": _control(
        "Set the autoscale bounds", "name", _query("min", {"type": "integer"}, "fewest"),
        _query("max", {"type": "integer"}, "most")),
    "/api/worker/queue/add-consumer/{name}": _control(
        "Consume one more queue", "name", _query("queue", {"type": "string"}, "the queue")),
    "/api/worker/queue/cancel-consumer/{name}": _control(
        "Stop consuming a queue", "name", _query("queue", {"type": "string"}, "the queue")),
    "/api/task/timeout/{taskname}": _control(
        "Set a task's time limits on a worker", "taskname",
        _query("workername", {"type": "string"}, "the worker"),
        _query("soft", {"type": "number"}, "soft limit, seconds"),
        _query("hard", {"type": "number"}, "hard limit, seconds")),
    "/api/task/rate-limit/{taskname}": _control(
        "Set a task's rate limit on a worker", "taskname",
        _query("workername", {"type": "string"}, "the worker"),
        _query("ratelimit", {"type": "string"}, "e.g. 10/m")),
    "/healthcheck": {"get": {
        "summary": "OK while the dashboard serves (no credentials needed, as Flower's)",
        "responses": {"200": {"description": "the text OK",
                              "content": {"text/plain": {"schema": {"const": "OK"}}}}},
    }},
    "/api/openapi.json": {"get": {
        "summary": "This schema",
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_AUTH},
    }},
}

_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "Message": {"type": "object", "properties": {"message": {"type": "string"}}},
    "Submit": {"type": "object", "additionalProperties": True, "properties": {
        "args": {"type": "array"}, "kwargs": {"type": "object"},
        "countdown": {"type": "number"}, "eta": {"type": "string"},
        "expires": {"type": ["number", "string"]}, "queue": {"type": "string"},
        "priority": {"type": "integer"}}},
    "Submitted": {"type": "object", "required": ["task-id"], "properties": {
        "task-id": {"type": "string"}, "state": {"type": "string"}}},
    "Result": {"type": "object", "required": ["task-id", "state"], "properties": {
        "task-id": {"type": "string"}, "state": {"type": "string"}, "result": {},
        "traceback": _NULLABLE_STRING}},
    "Task": {"type": "object", "properties": {
        "uuid": {"type": "string"}, "name": _NULLABLE_STRING, "state": {"type": "string"},
        **{k: _NULLABLE_NUMBER for k in ("received", "sent", "started", "rejected",
           "succeeded", "failed", "retried", "revoked", "timestamp", "runtime")},
        **{k: _NULLABLE_STRING for k in ("args", "kwargs", "eta", "expires", "worker",
           "result", "exception", "traceback", "exchange", "routing_key", "client",
           "root", "root_id", "parent", "parent_id")},
        "retries": {"type": ["integer", "null"]}, "clock": {"type": "integer"},
        "children": {"type": "array", "items": {"type": "string"}}}},
    "TaskMap": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Task"}},
    "TaskTypes": {"type": "object", "properties": {
        "task-types": {"type": "array", "items": {"type": "string"}}}},
    "Worker": {"type": "object", "properties": {
        "hostname": {"type": "string"}, "status": {"type": "boolean"},
        "timestamp": _NULLABLE_NUMBER, "pid": {"type": ["integer", "null"]},
        "freq": {"type": "number"}, "clock": {"type": "integer"},
        "active_count": {"type": ["integer", "null"]},
        "processed": {"type": ["integer", "null"]}, "loadavg": {},
        "sw_ident": _NULLABLE_STRING, "sw_ver": _NULLABLE_STRING, "sw_sys": _NULLABLE_STRING,
        "stats": {"type": "object"}, "active_queues": {"type": "array"},
        "registered": {"type": "array"}, "conf": {"type": "object"},
        "scheduled": {"type": "array"}, "active": {"type": "array"},
        "reserved": {"type": "array"}, "revoked": {"type": "array"}}},
    "DeadLetters": {"type": "array", "items": {"type": "object", "required": [
        "id", "queue", "reason", "dead_at"], "properties": {
        "id": {"type": "string"}, "queue": {"type": "string"}, "reason": {"type": "string"},
        "dead_at": {"type": "number"}, "task": {}, "task_id": {}, "argsrepr": {},
        "kwargsrepr": {}, "size": {"type": "integer"}}}},
    "QueueLengths": {"type": "object", "required": ["active_queues"], "properties": {
        "active_queues": {"type": "array", "items": {"type": "object", "required": [
            "name", "messages"], "properties": {
            "name": {"type": "string"}, "messages": {"type": "integer"}}}}}},
    "Queues": {"type": "array", "items": {"type": "object", "required": [
        "name", "messages", "consumers", "rate_in", "rate_in_source", "rate_out",
        "rate_out_source"], "properties": {
        "name": {"type": "string"}, "messages": {"type": "integer"},
        "consumers": {"type": "array", "items": {"type": "string"}},
        "rate_in": _NULLABLE_NUMBER, "rate_out": _NULLABLE_NUMBER,
        "rate_in_source": {"enum": ["events", "depth", None]},
        "rate_out_source": {"enum": ["events", "depth", None]}}}},
    "Schedules": {"type": "object", "required": ["holder", "entries"], "properties": {
        "holder": _NULLABLE_STRING, "entries": {"type": "array", "items": {
            "type": "object", "required": ["name", "task", "next_run"], "properties": {
                "name": {"type": "string"}, "task": {"type": "string"},
                "schedule": {"type": "string"}, "args": {"type": "string"},
                "kwargs": {"type": "string"}, "last_run": _NULLABLE_NUMBER,
                "next_run": {"type": "number"}}}}}},
    "Workflow": {"type": "object", "required": ["root_id", "trees"], "properties": {
        "root_id": {"type": "string"},
        "trees": {"type": "array", "items": {"$ref": "#/components/schemas/WorkflowNode"}}}},
    "WorkflowNode": {"type": "object", "required": ["uuid", "state", "children"], "properties": {
        "uuid": {"type": "string"}, "name": _NULLABLE_STRING, "state": {"type": "string"},
        "parent_id": _NULLABLE_STRING,
        "children": {"type": "array", "items": {"$ref": "#/components/schemas/WorkflowNode"}}}},
    "Requeue": {"type": "object", "properties": {
        "ids": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "all": {"type": "boolean"}}},
    "Requeued": {"type": "object", "required": ["requeued"], "properties": {
        "requeued": {"type": "integer"}}},
    "Purged": {"type": "object", "required": ["purged"], "properties": {
        "purged": {"type": "integer"}}},
    "Series": {"type": "object", "required": ["interval", "points"], "properties": {
        "interval": {"type": "number"}, "points": {"type": "array", "items": {
            "type": "object", "required": ["start", "succeeded", "failed"], "properties": {
                "start": {"type": "number"}, "succeeded": {"type": "integer"},
                "failed": {"type": "integer"}, "p50": _NULLABLE_NUMBER,
                "p95": _NULLABLE_NUMBER, "p99": _NULLABLE_NUMBER}}}}},
    "WorkerMap": {"type": "object", "additionalProperties": {
        "oneOf": [{"$ref": "#/components/schemas/Worker"}, {"type": "boolean"}]}},
}
# fmt: on

SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "celeriac dashboard API",
        "version": __version__,
        "description": "Flower's task and worker endpoints, from the cluster's events.",
    },
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
    },
    "security": [{}, {"basic": []}],
}


async def openapi(request: Request) -> JSONResponse:
    """``GET /api/openapi.json``."""
    del request
    return JSONResponse(SCHEMA)


def routes() -> list[Route]:
    """The schema's route."""
    return [Route("/api/openapi.json", openapi, methods=["GET"])]
