# The two commands a newcomer needs: `make dev` (run it) and `make test` (test it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Parallel test workers; each test has its own database and RabbitMQ namespace.
WORKERS ?= 2
# The resolver `make lock` uses (not needed to install: pip reads the lock files).
UV_VERSION ?= 0.13.9
# pyproject's [build-system] requires, locked too so the editable install is hashed.
BUILD_REQUIRES = $(PYTHON) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))"
LOCK_FLAGS = --generate-hashes --universal --python-version 3.11 --custom-compile-command "make lock" --quiet

.PHONY: install dev test lint lock k8s-config bench cluster clean

# Every install comes from the lock files, with hashes: the same versions everywhere.
$(BIN)/crmsync: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

install: $(BIN)/crmsync

## Re-resolve the dependencies of pyproject.toml into requirements.lock (runtime, the
## Docker image) and requirements-dev.lock (runtime + dev, the same runtime versions).
## Run it after changing pyproject.toml's dependencies; `make lock UPGRADE=1` takes the newest.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BUILD_REQUIRES) | $(BIN)/uv pip compile pyproject.toml - $(LOCK_FLAGS) \
		$(if $(UPGRADE),--upgrade) -o requirements.lock
	$(BUILD_REQUIRES) | $(BIN)/uv pip compile pyproject.toml - --extra dev $(LOCK_FLAGS) \
		-c requirements.lock $(if $(UPGRADE),--upgrade) -o requirements-dev.lock

## Regenerate deploy/kubernetes's ConfigMap and Secret keys from .env.example.
k8s-config: install
	$(BIN)/python deploy/kubernetes/generate_config.py

.env:
	cp .env.example .env

## Install, migrate, and run sandbox + intake + syncer in the foreground (Ctrl-C stops all).
dev: install .env
	$(BIN)/crmsync dev

## The whole test suite (real PostgreSQL and RabbitMQ), then lint and import contracts.
test: install
	$(BIN)/ruff check shared services tests bench deploy
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(WORKERS) -p no:cacheprovider

lint: install
	$(BIN)/ruff check shared services tests bench deploy
	$(BIN)/ruff format --check shared services tests bench deploy
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/intake.py

## Three local RabbitMQ nodes, a node killed under load (bench/README.md).
cluster: install
	$(BIN)/python bench/cluster.py

clean:
	rm -rf $(VENV) .pytest_cache
