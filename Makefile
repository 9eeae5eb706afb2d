# Every target that needs Python depends on the venv, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format sim clean

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

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# A simulator to rehearse against from another shell (see README).
sim: install
	$(BIN)/kling-batch sim --port 8765 --media-port 8766

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
