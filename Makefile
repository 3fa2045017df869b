# memscribe's front door: `make demo`, `make test`, `make bench`, `make lint`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

# Offline machines: use the tiktoken encodings shipped beside the checkout, when present.
SHARED_TIKTOKEN := $(abspath ../shared/tiktoken)
ifneq ($(wildcard $(SHARED_TIKTOKEN)/*),)
export TIKTOKEN_CACHE_DIR ?= $(SHARED_TIKTOKEN)
endif

.PHONY: install demo test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(VENV)/bin/memscribe demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy core config tasks worker bench

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m pip install --quiet -e '.[dev,bench,local-embeddings]'
	$(PY) -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
