# Two commands matter: `make run` (serve on :8080) and `make test` (everything CI runs).
# Both create the virtualenv and install pinned requirements first.
PYTHON ?= $(shell command -v python3.12 || ls /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | head -n1 || echo python3.12)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run migrate test lint fmt bench clean

include mk/iac.mk
include mk/bench.mk

$(STAMP): requirements.txt requirements-local.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m services.migrate
	$(BIN)/gunicorn --config gunicorn.conf.py main:app

migrate: $(STAMP)
	$(BIN)/python -m services.migrate

test: $(STAMP) iac-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) iac-check
	bash tools/ensure_chromium.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench.store_bench

clean:
	rm -rf $(VENV) $(IAC_VENV) .pytest_cache .ruff_cache
