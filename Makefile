# The two commands of the README: `make demo` (the main job, no servers) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit install bench

$(BIN)/celeriac: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all]'
	touch $@

$(VENV)/.dev: $(BIN)/celeriac
	$(BIN)/pip install -q 'pytest>=8' 'pytest-asyncio>=0.23' 'pytest-timeout>=2.3' 'celery[redis]>=5.5' 'ruff>=0.6' 'mypy>=1.11' types-redis
	touch $@

install: $(VENV)/.dev

demo: $(BIN)/celeriac
	$(BIN)/celeriac demo

lint: $(VENV)/.dev
	$(BIN)/ruff check celeriac tests

typecheck: $(VENV)/.dev
	$(BIN)/mypy celeriac

unit: $(VENV)/.dev
	$(BIN)/pytest -q tests/unit

test: lint typecheck
	$(BIN)/pytest -q

bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks
