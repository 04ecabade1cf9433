# Two commands a new user needs:  `make run` (the main job) and `make test` (the whole suite).
# Each sets itself up: a .venv with what it needs, created on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is pinned so pip takes the CPU build that ships on this kind of machine instead of
# resolving a multi-GB CUDA build; a GPU box installs its own torch before `pip install -e .[train]`.
TORCH  ?= torch==2.13.0

.PHONY: run test lint typecheck unit bench clean browser

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

# The web page's browser test drives Debian's chromium; installed here when missing (it needs apt and
# root; without them the test skips and says why).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
		|| echo "could not install chromium and chromium-driver: the browser test will skip"; \
	else echo "chromium and chromium-driver are missing (apt-get install chromium chromium-driver as root): the browser test will skip"; fi

test: $(VENV)/.dev browser
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
