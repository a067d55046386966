# Two entry points (see README): `make demo` runs the local network demo, `make test` runs the tests.
# Each creates/uses the local virtualenv .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test install install-dev clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e '.[dev,hf]'
	touch $@

install: $(VENV)/.base
install-dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(VENV)/bin/templar-jax demo

test: $(VENV)/.dev
	$(PY) -m pytest -q -n 2 --timeout 900 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
