# Two commands a new user needs:  `make run` (the main job) and `make test` (the whole suite).
# Each sets itself up: a .venv with what it needs, created on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is pinned so pip takes the CPU build that ships on this kind of machine instead of
# resolving a multi-GB CUDA build; a GPU box installs its own torch before `pip install -e .[train]`.
TORCH  ?= torch==2.13.0

.PHONY: run test lint typecheck unit bench clean

$(VENV)/.serve: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,postgres]'
	touch $@

$(VENV)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH)'
	$(PY) -m pip install -q -e '.[cpu,train,dev,postgres]'
	touch $(VENV)/.serve $@

run: $(VENV)/.serve
	$(PY) -m bot

test: $(VENV)/.dev
	@# The store's tests start a throwaway PostgreSQL cluster (tests/postgres.py).
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q

unit: $(VENV)/.dev
	$(PY) -m pytest -q -x

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
