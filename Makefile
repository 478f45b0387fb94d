# The few commands people need. Each target sets up .venv first when it is missing or stale.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUNDLED_PLUGINS := plugins/ms plugins/pddm plugins/sgml plugins/ics plugins/pml

.PHONY: install demo test lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(BUNDLED_PLUGINS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch torchvision
	$(BIN)/pip install --quiet -e ".[test,tensorboard]" $(addprefix -e ,$(BUNDLED_PLUGINS))
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bench run --plugin ms --dataset synth-cub

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) results .pytest_cache
