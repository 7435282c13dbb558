# CareNet: `make run` sets everything up and serves http://127.0.0.1:8000; `make test` runs every test.
# The first Python >= 3.11 that really runs (a pyenv shim may exist for a version not selected).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint typecheck unit integration bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "CareNet needs Python >= 3.11 (set PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/carenet migrate
	$(BIN)/carenet demo
	$(BIN)/carenet serve

lint: install
	$(BIN)/ruff check src tests bench tools migrations
	$(BIN)/ruff format --check src tests bench tools migrations
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

bench: install
	$(BIN)/carenet bench ingest
	$(BIN)/carenet bench latency

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache carenet.db carenet.db-wal carenet.db-shm
