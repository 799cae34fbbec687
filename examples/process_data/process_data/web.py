"""The HTTP API: the Flask app factory and its views."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from process_data import settings
from process_data.db import Job, Session, create_tables
from process_data.tasks import app, process_data

__all__ = ["create_app"]


def create_app() -> Flask:
    """Build the Flask app; the tables are created on first start."""
    web = Flask(__name__)
    web.config["MAX_CONTENT_LENGTH"] = settings.MAX_BODY_BYTES
    create_tables()
    web.add_url_rule("/api/process_data", view_func=submit, methods=["POST"])
    web.add_url_rule("/api/tasks/<task_id>", view_func=task_status, methods=["GET"])
    web.add_url_rule("/healthz", view_func=health, methods=["GET"])
    web.register_error_handler(HTTPException, http_error)
    return web


def submit() -> tuple[Any, int]:
    """Store the document, enqueue its processing, answer with the task id (202)."""
    if not request.is_json:
        return jsonify(error="send a JSON body with Content-Type: application/json"), 415
    try:
        payload = request.get_json()
    except BadRequest:
        return jsonify(error="the body is not valid JSON"), 400
    job_id = str(uuid.uuid4())
    with Session.begin() as session:
        session.add(Job(id=job_id, payload=payload))
    try:
        process_data.apply_async((job_id,), task_id=job_id, retry=False)
    except (ConnectionError, OSError, TimeoutError) as exc:
        with Session.begin() as session:
            job = session.get(Job, job_id)
            if job is not None:
                session.delete(job)
        return jsonify(error=f"the task queue is unavailable, try again later ({exc})"), 503
    return jsonify(task_id=job_id), 202


def task_status(task_id: str) -> tuple[Any, int]:
    """The task's state and, once it finished, its result; 404 for an id no one submitted."""
    try:
        uuid.UUID(task_id)
    except ValueError:
        return jsonify(error=f"{task_id!r} is not a task id"), 400
    with Session() as session:
        job = session.get(Job, task_id)
        if job is None:
            return jsonify(error=f"no task {task_id}"), 404
        worker = job.worker
    result = app.AsyncResult(task_id)
    state = result.state
    body: dict[str, Any] = {"task_id": task_id, "state": state, "worker": worker}
    if state == "SUCCESS":
        body["result"] = result.result
    elif state == "FAILURE":
        body["error"] = repr(result.result)
    return jsonify(body), 200


def health() -> tuple[Any, int]:
    return jsonify(ok=True), 200


def http_error(exc: HTTPException) -> tuple[Any, int]:
    """Errors as JSON with a message that names the problem."""
    if isinstance(exc, RequestEntityTooLarge):
        return jsonify(error="the body is larger than the limit (MAX_BODY_BYTES)"), 413
    return jsonify(error=exc.description or exc.name), exc.code or 500
