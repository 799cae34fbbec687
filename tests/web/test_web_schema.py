"""Schemathesis against the dashboard's OpenAPI schema: generated requests to every endpoint
(but the endless event stream) never get a 5xx, and the answers match the schema."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from celeriac import Celery
from celeriac.web import create_app

pytestmark = pytest.mark.timeout(300)

app = Celery("fuzz", broker="memory://")
app.task(name="fuzz.add")(lambda x=0, y=0: x + y)
web = create_app(app, basic_auth="fuzz:pw")
AUTH = {"authorization": "Basic " + base64.b64encode(b"fuzz:pw").decode()}
# Loaded at collection (schemathesis' parametrize needs it then): one small request.
schema = schemathesis.openapi.from_asgi("/api/openapi.json", web, headers=AUTH)
# /api/task/result may wait up to an hour for a task that never comes: fuzz short waits.
for parameter in schema.raw_schema["paths"]["/api/task/result/{task_id}"]["get"]["parameters"]:
    if parameter["name"] == "timeout":
        parameter["schema"]["maximum"] = 0.2


@schema.exclude(path="/api/events").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_answers_match_the_schema(case: Any) -> None:
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error, response_schema_conformance])
