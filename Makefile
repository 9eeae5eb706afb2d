# Every target that needs Python depends on the venv, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format sim browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: a demo batch on the embedded simulator (no API key, no network).
demo: install
	rm -rf outputs/demo
	$(BIN)/kling-batch run manifests/example.yaml --simulate --yes --submit-rate 2/s --first-poll-s 1 --out outputs/demo

# Four workers: the tests mostly wait on sockets and subprocesses, not on the CPU.
test: install
	$(BIN)/python -m pytest -n 4

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

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Speed against the simulator, beside the official SDK script (a few minutes; see README).
bench: install
	$(BIN)/python -m bench.bench

# A simulator to rehearse against from another shell (see README).
sim: install
	$(BIN)/kling-batch sim --port 8765 --media-port 8766

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
