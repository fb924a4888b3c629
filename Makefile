# Two commands: `make demo` runs the example pipeline against the local emulator,
# `make test` installs everything and runs every test. Both work on a fresh machine.
# `make test-lowest` runs the unit, hook and operator suites on the lowest supported Airflow only.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The lowest Airflow the provider supports (pyproject.toml: apache-airflow>=3.1.0), tested in its own venv.
LOWEST_AIRFLOW ?= 3.1.8
LOWEST_VENV ?= .venv-lowest
LOWEST_BIN := $(LOWEST_VENV)/bin

.PHONY: demo test test-lowest install install-lowest

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# Only what the unit, hook and operator suites need (the `test` extra), with Airflow pinned.
# The stamp records the version, so changing LOWEST_AIRFLOW reinstalls.
$(LOWEST_BIN)/.installed-$(LOWEST_AIRFLOW): pyproject.toml
	test -x $(LOWEST_BIN)/python || $(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_BIN)/python -m pip install -q --upgrade pip
	$(LOWEST_BIN)/python -m pip install -q "apache-airflow==$(LOWEST_AIRFLOW)" -e ".[test]"
	rm -f $(LOWEST_BIN)/.installed-*
	touch $@

install: $(BIN)/.installed

install-lowest: $(LOWEST_BIN)/.installed-$(LOWEST_AIRFLOW)

demo: install
	$(BIN)/python scripts/demo.py

test: install install-lowest
	LOWEST_VENV=$(LOWEST_VENV) bash scripts/test.sh

test-lowest: install-lowest
	LOWEST_VENV=$(LOWEST_VENV) bash scripts/test.sh --lowest-only
