# The two commands of the README: `make demo` and `make test`.
# Both create .venv in the repository (if missing) and install the project into it.
# `make wheel` builds dist/colossal_llama-*.whl, which installs and runs without the checkout.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo wheel clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e '.[test]'
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

# pytest exits non-zero (5) when it collects no test: make then fails, as it should
test: install
	$(PY) -m pytest

demo: install
	$(PY) applications/quickstart/demo.py

# no build isolation: the [test] extra installed setuptools and wheel, so nothing is downloaded
wheel: install
	$(PY) -m pip wheel --no-deps --no-build-isolation --wheel-dir dist .

clean:
	rm -rf runs .pytest_cache build dist
