# `make demo` and `make test` each create .venv and install lrd into it (pinned by constraints.txt) if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: demo test lint format clean constraints

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lrd.demo --out demo_results.jsonl

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist load --durations=20

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info demo_results.jsonl

# Re-pin: a fresh environment with the newest versions pyproject.toml allows, frozen into constraints.txt.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/python -m pip install --quiet --upgrade pip
	.venv-pin/bin/python -m pip install --quiet -e '.[test,ray]'
	head -3 constraints.txt > constraints.new
	.venv-pin/bin/python -m pip freeze --exclude-editable >> constraints.new
	mv constraints.new constraints.txt && rm -rf .venv-pin
