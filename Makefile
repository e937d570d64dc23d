# Two commands do everything: `make dev` runs the service, `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: dev test test-fast install lint clean bench bench-quick chaos chaos-quick

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# axe-core, injected by the browser tests' accessibility checks (package-lock.json pins it).
AXE := node_modules/axe-core/axe.min.js
$(AXE): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(AXE)

dev: install
	$(PY) -m devstack.run

# Two pytest workers, each with its own Postgres and Temporal; a file's tests stay on one worker.
TEST_WORKERS ?= 2
test: install $(AXE)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install  # OrderWorkflow's decisions with fake steps: no Postgres, no gateway, seconds
	$(PY) -m pytest tests/fast $(PYTEST_ARGS)

bench: install  # full benchmark, 3 alternating rounds of ours and the floor, at most 18 minutes; BENCH_ARGS="--workers 2 --api-procs 2" to scale out
	$(PY) -m bench.run --mode full $(BENCH_ARGS)

bench-quick: install  # the same in small, at most 6 minutes (about 4.5 on a quiet machine)
	$(PY) -m bench.run --mode quick $(BENCH_ARGS)

chaos: install  # failure scenarios under load with invariant checks
	$(PY) -m chaos.run

chaos-quick: install
	$(PY) -m chaos.run --quick

# Format, then lint, then types (mypy's set and strictness: [tool.mypy] in pyproject.toml; cache in .mypy_cache).
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
