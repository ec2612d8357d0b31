# The two commands: `make run` and `make test`. Everything they need is installed from here.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
CHROMIUM := /usr/bin/chromium
PYTEST_WORKERS ?= 2
FUZZ_MAX_EXAMPLES ?= 500

.PHONY: run test fuzz lint format bench db-stop clean install

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)

run: $(STAMP_RUN)
	$(PY) -m qms.run

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "Chromium is needed for browser tests: install it at $(CHROMIUM)"; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

test: $(STAMP_TEST) $(CHROMIUM)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

fuzz: $(STAMP_TEST)
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) $(VENV)/bin/pytest tests/api_fuzz -p no:cacheprovider $(FUZZ_ARGS)

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP_TEST)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP_TEST)
	$(PY) -m bench

db-stop: $(STAMP_RUN)
	$(PY) -c "from qms.embedded import stop_postgres; stop_postgres()"

clean:
	rm -rf $(VENV) var
