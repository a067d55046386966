# Two entry points (see README): `make demo` runs the local network demo, `make test` runs the tests.
# Each creates/uses the local virtualenv .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test install install-dev browser clean

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

# Chromium for the dashboard's browser test, from the distribution's packages; nothing to do once one
# is installed (sudo only when not root; without apt-get that test is skipped).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
	  || { command -v apt-get >/dev/null || { echo "no apt-get: install Chromium for tests/test_dashboard.py"; exit 0; }; \
	       SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

test: $(VENV)/.dev browser
	$(PY) -m pytest -q -n 2 --timeout 900 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
