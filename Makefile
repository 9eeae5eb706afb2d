# Every target that needs Python depends on the venv, so a fresh clone needs nothing else.
# `make demo` installs what a user needs to run a batch; the other targets add the
# development tools (pytest, ruff, mypy, selenium, the official SDK).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help install dev demo test lint typecheck check format sim browser bench clean

help:
	@echo "make demo       a demo batch on the embedded simulator (installs what it needs)"
	@echo "make test       the test suite"
	@echo "make check      format check, ruff, mypy --strict, then the tests"
	@echo "make bench      speed against the simulator, beside the official SDK script"
	@echo "make sim        a simulator to rehearse against from another shell"
	@echo "make format     ruff format and fixes"
	@echo "make browser    Debian's Chromium, for the report's browser test"
	@echo "make clean      remove .venv and caches"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

dev: $(DEV_STAMP)

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(RUN_STAMP) $(DEV_STAMP)

# The main job: a demo batch on the embedded simulator (no API key, no network).
demo: install
	rm -rf outputs/demo
	$(BIN)/kling-batch run manifests/example.yaml --simulate --yes --submit-rate 2/s --first-poll-s 1 --out outputs/demo

# Four workers: the tests mostly wait on sockets and subprocesses, not on the CPU.
# Then the few that time something a person waits for (a page opening), alone: beside
# four workers on two cores they measure the machine's load, not the code.
test: dev
	$(BIN)/python -m pytest -n 4 -m "not alone"
	$(BIN)/python -m pytest -m alone

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev
	$(BIN)/mypy

# The guard rails in one command: what CI runs.
check: lint typecheck test

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Debian's Chromium and its driver, for the report's browser test (skipped without them).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "chromium and chromedriver are here"; \
	else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    chromium chromium-driver >/dev/null && echo "installed chromium and chromedriver"; \
	fi

# Speed against the simulator, beside the official SDK script (a few minutes; see README).
bench: dev
	$(BIN)/python -m bench.bench
	$(BIN)/python -m bench.night_end
	$(BIN)/python -m bench.chains

# A simulator to rehearse against from another shell (see README).
sim: install
	$(BIN)/kling-batch sim --port 8765 --media-port 8766

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
