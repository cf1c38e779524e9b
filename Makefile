# The two commands a newcomer needs: `make dev` (run it) and `make test` (test it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Parallel test workers; each test has its own database and RabbitMQ namespace.
WORKERS ?= 2

.PHONY: install dev test lint bench clean

$(BIN)/crmsync: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/crmsync

.env:
	cp .env.example .env

## Install, migrate, and run sandbox + intake + syncer in the foreground (Ctrl-C stops all).
dev: install .env
	$(BIN)/crmsync dev

## The whole test suite (real PostgreSQL and RabbitMQ), then lint and import contracts.
test: install
	$(BIN)/ruff check shared services tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(WORKERS) -p no:cacheprovider

lint: install
	$(BIN)/ruff check shared services tests bench
	$(BIN)/ruff format --check shared services tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) .pytest_cache
