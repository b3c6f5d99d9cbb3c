# indexpair — the two commands: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test unit lint docs down status clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first, so no other requirement pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded defaults: stack up, demo models, promotions, status.
demo: install
	$(BIN)/indexpair demo

## Every test against real local services (started and stopped by the tests).
test: install
	$(BIN)/python -m pytest

unit: install
	$(BIN)/python -m pytest tests/unit

## ruff, mypy, the import contracts (layers; pyproject.toml [tool.importlinter]) and the
## docs site (a broken link fails it).
lint: install docs
	$(BIN)/ruff check indexpair flows tasks deployments cli demo tests benchmarks
	$(BIN)/mypy indexpair flows tasks deployments cli demo
	$(BIN)/lint-imports

## The documentation site (docs/, mkdocs.yml); --strict fails on a broken link.
docs: install
	$(BIN)/mkdocs build --strict --site-dir site

down:
	$(BIN)/indexpair stack down

status:
	$(BIN)/indexpair stack status
	$(BIN)/indexpair status

clean: down
	rm -rf .indexpair
