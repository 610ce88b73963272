# Retrieval side by side with LangGraph's PostgresStore and mem0, in its own
# virtualenv: their dependencies are not part of the application's pins.
#   make bench-compare                               # 10k, 100k and 1M memories (~1 h)
#   make bench-compare BENCH_COMPARE_ARGS="--stages 10000,100000"
PYTHON ?= $(shell command -v python3.12 || ls /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | head -n1 || echo python3.12)
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_COMPARE_ARGS ?=

.PHONY: bench-venv bench-compare

$(BENCH_STAMP): bench/requirements-compare.txt requirements.txt requirements-local.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements-compare.txt
	$(BENCH_VENV)/bin/pip check
	touch $(BENCH_STAMP)

bench-venv: $(BENCH_STAMP)

bench-compare: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench.compare_stores $(BENCH_COMPARE_ARGS)
