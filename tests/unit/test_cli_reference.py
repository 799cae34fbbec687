"""``docs/cli.md`` is generated from the Click commands and is up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "scripts" / "cli_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_page_is_current() -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == _generator().render(), (
        "regenerate: python scripts/cli_reference.py > docs/cli.md"
    )


def test_every_command_and_option_is_on_the_page() -> None:
    page = _generator().render()
    for heading in (
        "`celeriac worker`",
        "`celeriac multi start`",
        "`celeriac beat`",
        "`celeriac list bindings`",
        "`celeriac upgrade settings`",
    ):
        assert heading in page
    for option in ("--autoscale", "--max-memory-per-child", "--pidfile", "--workdir", "-S,"):
        assert option in page


def test_the_page_does_not_depend_on_what_ran_before() -> None:
    """click caches a command's help option the first time a context asks for it: a test
    that ran ``demo`` on its own (help names ``--help`` only) must not change the page."""
    import click  # noqa: PLC0415

    from celeriac.cli.main import cli  # noqa: PLC0415

    demo = cli.commands["demo"]
    before = _generator().render()
    demo._help_option = None  # as a fresh process
    demo.get_help_option(click.Context(demo))  # cached with the default names
    try:
        assert _generator().render() == before
    finally:
        demo._help_option = None  # later tests build it afresh
