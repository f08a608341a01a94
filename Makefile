# The ways in. `make run` and `make test` set everything up on a fresh machine (a virtualenv in .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-pg lint openapi bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Start the whole system on one port (embedded SQLite + Redis unless LVBAO_DATABASE_URL / LVBAO_REDIS_URL are set).
run: $(STAMP)
	$(BIN)/lvbao run

## Unit, integration and end-to-end tests (real PostgreSQL and Redis when reachable; with CI set they must be).
test: $(STAMP)
	$(BIN)/pytest

## The same tests, but never on the SQLite / embedded Redis fallback: stops at once if PostgreSQL or Redis is not up.
test-pg: $(STAMP)
	LVBAO_TEST_REQUIRE_SERVERS=1 $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

## Regenerate openapi/<service>.yaml and lvbao/web/vocabulary.js from the code (a test fails when they drift).
openapi: $(STAMP)
	$(BIN)/lvbao openapi

## Benchmarks on PostgreSQL through gunicorn: figures and ratios against baselines measured in the same run.
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || (echo "bench needs wrk" && false)
	$(BIN)/python -m bench.run

clean:
	rm -rf var .pytest_cache .ruff_cache .coverage
