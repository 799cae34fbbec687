"""Typed tasks: mypy, run on check_tasks.py, reveals the types and reports the errors its
comments expect, and nothing else (see that file's docstring)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

CHECKED = Path(__file__).with_name("check_tasks.py")
ROOT = Path(__file__).parents[2]
EXPECTED = re.compile(r"#\s*(?P<kind>[RE]):\s*(?P<value>.+?)\s*$")
REPORTED = re.compile(
    r"^[^:]+:(?P<line>\d+): (?P<level>error|note): (?P<message>.*?)(?:  \[(?P<code>[\w-]+)\])?$"
)


def _expected() -> tuple[dict[int, str], dict[int, set[str]]]:
    """The revealed type and the error codes each line of the checked file asks for."""
    reveals: dict[int, str] = {}
    errors: dict[int, set[str]] = {}
    for number, line in enumerate(CHECKED.read_text().splitlines(), start=1):
        found = EXPECTED.search(line)
        if found is None:
            continue
        if found["kind"] == "R":
            reveals[number] = found["value"]
        else:
            errors[number] = {code.strip() for code in found["value"].split(",")}
    return reveals, errors


@pytest.fixture(scope="module")
def mypy_run() -> subprocess.CompletedProcess[str]:
    """One mypy run (strict, no cache shared with other runs) on the checked file."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes",
         "--no-error-summary", "--no-pretty", str(CHECKED)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip


def _reported(run: subprocess.CompletedProcess[str]) -> tuple[dict[int, str], dict[int, set[str]]]:
    reveals: dict[int, str] = {}
    errors: dict[int, set[str]] = {}
    for line in run.stdout.splitlines():
        found = REPORTED.match(line)
        assert found is not None or not line.strip(), f"unexpected mypy output: {line}"
        if found is None:
            continue
        number = int(found["line"])
        reveal = re.fullmatch(r'Revealed type is "(.*)"', found["message"])
        if found["level"] == "note" and reveal is not None:
            reveals[number] = reveal[1]
        elif found["level"] == "error":
            errors.setdefault(number, set()).add(found["code"] or "misc")
    return reveals, errors


def test_the_checked_file_expects_something() -> None:
    reveals, errors = _expected()
    assert len(reveals) >= 15
    assert len(errors) >= 10


def test_mypy_fails_on_the_wrong_usages(mypy_run: subprocess.CompletedProcess[str]) -> None:
    # 1: errors found (the wrong usages); 2 would be a crash or a bad command line.
    assert mypy_run.returncode == 1, mypy_run.stdout + mypy_run.stderr


def test_each_revealed_type_is_the_expected_one(
    mypy_run: subprocess.CompletedProcess[str],
) -> None:
    expected, _ = _expected()
    revealed, _ = _reported(mypy_run)
    assert revealed == expected


def test_errors_are_exactly_the_expected_ones(mypy_run: subprocess.CompletedProcess[str]) -> None:
    _, expected = _expected()
    _, reported = _reported(mypy_run)
    assert reported == expected, mypy_run.stdout
