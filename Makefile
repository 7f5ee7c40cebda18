# Two commands on a fresh machine with Python 3.11+, Node.js and make:
#   make demo   run the collector end to end on the local stack
#   make test   ruff + mypy + the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

CHECKOV_VENV := .venv-checkov

BENCH_VENV := .venv-bench

.PHONY: demo test venv lint typecheck checkov stack bench cost clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BENCH_VENV)/.installed: benchmarks/requirements-peers.txt requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements-peers.txt
	touch $@

# Figures, not a test: the collector against Graph's limits and against the usual alternatives.
bench: $(VENV)/.installed node_modules/.installed $(BENCH_VENV)/.installed
	$(PY) benchmarks/bench.py

# The virtual environment alone, for python -m collector status / verify against Azure.
venv: $(VENV)/.installed

# What Azure would bill for a simulated week of hourly runs (docs/cost.md).
cost: $(VENV)/.installed node_modules/.installed
	$(PY) benchmarks/cost.py

demo: $(VENV)/.installed node_modules/.installed
	$(PY) -m devstack demo

stack: $(VENV)/.installed node_modules/.installed
	$(PY) -m devstack up

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy

# Offline scan of the Bicep templates (tests/test_infra.py checks what checkov does not), once
# per deployment mode: public (the default) and private networking (VNET_ENABLED=true), each
# from a copy of infra/ with the switch's values chosen (devstack/bicep_modes.py).
# The multi-tenant app module is skipped: checkov's Bicep parser predates the `extension`
# keyword of the Graph Bicep extension, and checkov has no check of Graph resources;
# tests/test_infra.py parses and checks it with a current pycep.
CHECKOV_DIR := .checkov
checkov: $(CHECKOV_VENV)/.installed $(VENV)/.installed
	@for mode in public private; do \
		echo "checkov: $$mode networking"; \
		$(PY) -m devstack.bicep_modes $$mode $(CHECKOV_DIR)/$$mode || exit 1; \
		$(CHECKOV_VENV)/bin/checkov --directory $(CHECKOV_DIR)/$$mode --framework bicep \
			--skip-download --compact --quiet \
			--skip-path $(CHECKOV_DIR)/$$mode/modules/multi-tenant-app.bicep || exit 1; \
	done

test: lint typecheck checkov node_modules/.installed
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(CHECKOV_DIR) $(BENCH_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
