# riskstream: the README's two commands, `make demo` and `make test`.
# Each installs what it needs (Python packages into .venv, Kafka jars,
# ClickHouse and PostgreSQL through `riskstream stack up`) and is safe to run twice.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -ra

.PHONY: install demo test unit lint clean browser promtool

install: $(STAMP)

# The venv is created once; a python3 without a working venv module (Debian
# without python3-venv) gets one from virtualenv, which pip installs into a
# scratch folder (a --target install is allowed even where PEP 668 forbids
# touching the system's packages).
$(BIN)/python:
	@echo "==> creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "==> $(PYTHON) -m venv failed: bootstrapping virtualenv instead"; \
	  rm -rf $(VENV) build/virtualenv; \
	  $(PYTHON) -m pip install --quiet --target build/virtualenv virtualenv && \
	  PYTHONPATH=build/virtualenv $(PYTHON) -m virtualenv $(VENV); }

# Re-install only when the declared dependencies change.
$(STAMP): setup.cfg constraints.txt pyproject.toml | $(BIN)/python
	@echo "==> installing Python packages into $(VENV)"
	$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/riskstream demo

# The stack (with PostgreSQL, which the sink tests need) is stopped on every
# way out (pass, fail, Ctrl-C) and the exit code is pytest's (or `stack up`'s
# when the stack cannot start).
test: $(STAMP) browser promtool
	@trap '$(BIN)/riskstream stack down' EXIT; trap 'exit 130' INT TERM; \
	$(BIN)/riskstream stack up --with postgresql && $(BIN)/pytest $(PYTEST_ARGS)

# The unit tests alone: no services, a few minutes (the parity tests score
# 100,000 rows per model).
unit: $(STAMP) promtool
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit

# The dashboard's end-to-end test loads it in Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null || { \
	  echo "==> installing chromium (the dashboard test drives it headless)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; }

# The alerting rules' tests run promtool from Debian's prometheus package.
promtool:
	@command -v promtool >/dev/null || { \
	  echo "==> installing prometheus (the alerting rules' tests run its promtool)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends prometheus || { apt-get update && apt-get install -y --no-install-recommends prometheus; }; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core transport app agents models tables serving stack retraining datagen bench riskstream tests

clean:
	rm -rf $(VENV) build *.egg-info
