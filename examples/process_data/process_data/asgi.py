"""The FastAPI twin of ``web.py``: the same API with async endpoints, on the same task module.

``uvicorn --factory process_data.asgi:create_asgi_app`` serves it. Publishing is
``await process_data.aapply_async(...)`` and reading a result ``await result.aget()``, so no
request blocks the event loop on the broker or the result store; the synchronous SQLAlchemy
session (``db.py``, shared with the worker) runs in a thread. One worker serves both apps.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from process_data import settings
from process_data.db import Job, Session, create_tables
from process_data.tasks import app, process_data

__all__ = ["create_asgi_app"]


def create_asgi_app() -> FastAPI:
    """Build the FastAPI app; the tables are created on first start."""
    create_tables()
    web = FastAPI(title="process_data")
    web.add_api_route("/api/process_data", submit, methods=["POST"], status_code=202)
    web.add_api_route("/api/tasks/{task_id}", task_status, methods=["GET"])
    web.add_api_route("/healthz", health, methods=["GET"])
    return web


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def submit(request: Request) -> JSONResponse:
    """Store the document, enqueue its processing, answer with the task id (202)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return error(415, "send a JSON body with Content-Type: application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.MAX_BODY_BYTES:
        return error(413, "the body is larger than the limit (MAX_BODY_BYTES)")
    body = await read_bounded(request)
    if body is None:
        return error(413, "the body is larger than the limit (MAX_BODY_BYTES)")
    try:
        payload = json.loads(body)
    except ValueError:
        return error(400, "the body is not valid JSON")
    job_id = str(uuid.uuid4())
    await asyncio.to_thread(add_job, job_id, payload)
    try:
        # Bounded, so a broker that accepts connections but never answers cannot hold the request.
        async with asyncio.timeout(settings.PUBLISH_TIMEOUT):
            await process_data.aapply_async((job_id,), task_id=job_id, retry=False)
    except (ConnectionError, OSError, TimeoutError) as exc:
        await asyncio.to_thread(remove_job, job_id)
        reason = str(exc) or f"no answer within {settings.PUBLISH_TIMEOUT}s"
        return error(503, f"the task queue is unavailable, try again later ({reason})")
    return JSONResponse({"task_id": job_id}, status_code=202)


async def task_status(task_id: str) -> JSONResponse:
    """The task's state and, once it finished, its result; 404 for an id no one submitted."""
    try:
        uuid.UUID(task_id)
    except ValueError:
        return error(400, f"{task_id!r} is not a task id")
    job = await asyncio.to_thread(get_job, task_id)
    if job is None:
        return error(404, f"no task {task_id}")
    result = app.AsyncResult(task_id)
    state = str((await result.ameta()).get("status", "PENDING"))
    body: dict[str, Any] = {"task_id": task_id, "state": state, "worker": job.worker}
    if state == "SUCCESS":
        body["result"] = await result.aget(timeout=5)
    elif state == "FAILURE":
        body["error"] = repr(await result.aget(timeout=5, propagate=False))
    return JSONResponse(body)


async def health() -> dict[str, bool]:
    return {"ok": True}


async def read_bounded(request: Request) -> bytes | None:
    """The body, or None once it grows past the limit (a chunked body declares no length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def add_job(job_id: str, payload: Any) -> None:
    with Session.begin() as session:
        session.add(Job(id=job_id, payload=payload))


def remove_job(job_id: str) -> None:
    with Session.begin() as session:
        job = session.get(Job, job_id)
        if job is not None:
            session.delete(job)


def get_job(job_id: str) -> Job | None:
    with Session() as session:
        return session.get(Job, job_id)
