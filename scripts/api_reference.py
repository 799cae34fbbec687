"""Write the dashboard's HTTP API reference, ``docs/http-api.md``, from its OpenAPI schema.

    python scripts/api_reference.py > docs/http-api.md

The schema is the one the dashboard serves at ``/api/openapi.json``
(:data:`celeriac.web.openapi.SCHEMA`); ``tests/unit/test_api_reference.py`` fails when the
committed page differs from what this prints, so an endpoint cannot ship undocumented.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from celeriac.web.openapi import SCHEMA  # noqa: E402 - after making the package importable

__all__ = ["render"]

INTRO = """\
# HTTP API reference

Generated from the dashboard's OpenAPI schema (served at `/api/openapi.json`) by
`python scripts/api_reference.py > docs/http-api.md`; do not edit by hand. How to run the
dashboard, its credentials and what each page shows are in [the dashboard's guide](dashboard.md).
Every endpoint but `/healthcheck` needs credentials when `--basic-auth` or `--auth-token`
is set (HTTP basic, or `Authorization: Bearer TOKEN`); actions (`POST`) need them whenever
the dashboard is bound to an address other than loopback.
"""

_METHODS = ("get", "post", "put", "delete")


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in a few words: ``string``, ``array of Task``, ``Result``."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and "items" in schema:
        return f"array of {_type(schema['items'])}"
    if "enum" in schema:
        return f"{kind}: " + ", ".join(f"`{value}`" for value in schema["enum"])
    return str(kind)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _operation(path: str, method: str, spec: dict[str, Any]) -> Iterator[str]:
    yield f"### `{method.upper()} {path}`"
    yield ""
    yield _cell(spec.get("summary", ""))
    yield ""
    parameters = spec.get("parameters", [])
    if parameters:
        yield "| parameter | in | type | required | meaning |"
        yield "| --- | --- | --- | --- | --- |"
        for parameter in parameters:
            yield (
                f"| `{parameter['name']}` | {parameter['in']} | {_cell(_type(parameter['schema']))}"
                f" | {'yes' if parameter.get('required') else 'no'}"
                f" | {_cell(parameter.get('description', ''))} |"
            )
        yield ""
    body = spec.get("requestBody")
    if body is not None:
        for media, content in body.get("content", {}).items():
            required = "required" if body.get("required") else "optional"
            yield f"Body ({required}): `{media}`, {_type(content['schema'])}."
            yield ""
    yield "| status | meaning | body |"
    yield "| --- | --- | --- |"
    for status, response in spec.get("responses", {}).items():
        content = response.get("content", {})
        body_text = ", ".join(f"{_type(c['schema'])} (`{m}`)" for m, c in content.items())
        yield f"| {status} | {_cell(response.get('description', ''))} | {body_text or '-'} |"
    yield ""


def _component(name: str, schema: dict[str, Any]) -> Iterator[str]:
    yield f"### {name}"
    yield ""
    properties = schema.get("properties")
    if not properties:
        extra = schema.get("additionalProperties")
        detail = f", values: {_type(extra)}" if isinstance(extra, dict) else ""
        yield f"{_type(schema)}{detail}."
        yield ""
        return
    required = set(schema.get("required", []))
    yield "| field | type | required |"
    yield "| --- | --- | --- |"
    for field, spec in properties.items():
        yield f"| `{field}` | {_cell(_type(spec))} | {'yes' if field in required else 'no'} |"
    yield ""


def render() -> str:
    """The whole page."""
    lines = [INTRO, "## Endpoints", ""]
    for path, item in SCHEMA["paths"].items():
        for method in _METHODS:
            if method in item:
                lines.extend(_operation(path, method, item[method]))
    lines += ["## Schemas", ""]
    for name, schema in SCHEMA["components"]["schemas"].items():
        lines.extend(_component(name, schema))
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
