# kagiya: `make run` serves the embedded defaults, `make test` runs every test, `make bench` the benchmarks.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint system-deps venv clean

RUNTIME_STAMP := $(VENV)/.installed-runtime
PIP := $(BIN)/pip install -q --disable-pip-version-check

venv: $(STAMP)

# `make run` needs only the runtime set (faster on a fresh machine); tests need the dev set on top.
$(RUNTIME_STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e . --config-settings editable_mode=compat
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

run: $(RUNTIME_STAMP)
	@echo "kagiya: serving the embedded defaults on http://127.0.0.1:8080 (data in ./.kagiya)"
	@echo "  try: curl -s localhost:8080/healthz ; curl -s localhost:8080/openapi.json | head"
	@echo "       $(BIN)/kagiya secrets create mysecret -d password=s3cret -o secret.yaml && $(BIN)/kagiya secrets decrypt secret.yaml"
	$(BIN)/kagiya serve

test: venv system-deps
	$(BIN)/ruff check kagiya tests benchmarks app.py
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check kagiya tests benchmarks app.py
	$(BIN)/ruff format --check kagiya || true
	$(BIN)/mypy

bench: venv system-deps
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .kagiya .pytest_cache .ruff_cache .mypy_cache
