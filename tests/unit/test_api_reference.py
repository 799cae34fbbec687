"""``docs/http-api.md`` is generated from the dashboard's OpenAPI schema and is up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from celeriac.web.openapi import SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "api_reference", ROOT / "scripts" / "api_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_page_is_current() -> None:
    page = (ROOT / "docs" / "http-api.md").read_text()
    assert page == _generator().render(), (
        "regenerate: python scripts/api_reference.py > docs/http-api.md"
    )


def test_every_endpoint_and_schema_is_on_the_page() -> None:
    page = _generator().render()
    for path, item in SCHEMA["paths"].items():
        for method in item:
            assert f"### `{method.upper()} {path}`" in page
    for name in SCHEMA["components"]["schemas"]:
        assert f"### {name}\n" in page
    assert "| `taskname` | query | string | no | only tasks of this name |" in page
