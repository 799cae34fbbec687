"""Seed 002's web API: receive data, hand the DB write to the ``high_priority`` queue."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from tasks import add, app, store_item

__all__ = ["create_app"]


def create_app() -> Flask:
    web = Flask(__name__)

    @web.post("/items")
    def create_item() -> tuple[Any, int]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("value"), int):
            return jsonify(error='send JSON like {"name": "x", "value": 1}'), 400
        result = store_item.apply_async(
            args=[str(data.get("name", "")), data["value"]],
            queue="high_priority",
            exchange="custom",
            routing_key="high_priority",
        )
        return jsonify(task_id=result.id), 202

    @web.post("/add")
    def add_numbers() -> tuple[Any, int]:
        data = request.get_json(silent=True) or {}
        result = add.apply_async(args=[data.get("x", 10), data.get("y", 20)], queue="default")
        return jsonify(task_id=result.id), 202

    @web.get("/tasks/<task_id>")
    def task_state(task_id: str) -> tuple[Any, int]:
        result = app.AsyncResult(task_id)
        body: dict[str, Any] = {"task_id": task_id, "state": result.state}
        if result.successful():
            body["result"] = result.result
        return jsonify(body), 200

    return web
