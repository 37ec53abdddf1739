# The two commands a fresh Debian machine needs: `make run` and `make test`. Both set everything up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup run test e2e bench lint clean

setup:
	@VENV=$(VENV) bash scripts/bootstrap.sh

run: setup
	@$(PY) -m toolstack.demo

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Real libvirtd + QEMU under TCG: installs and starts them, then runs the e2e-marked tests.
e2e: setup
	bash scripts/e2e-setup.sh
	$(PY) -m pytest -q -m e2e $(PYTEST_ARGS)

bench: setup
	@for b in bench/*_bench.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
