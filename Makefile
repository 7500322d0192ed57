# `make demo` and `make test` create the environment themselves on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $@

.PHONY: install demo test test-fast bench
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m zoo.demo

test: $(VENV)/.installed
	$(PY) -m pytest

# The everyday loop: tests not marked slow, with setup.cfg's options (parallel runs). Only
# tests/ is collected, so the docstring examples in zoo/, trainers/ and export/ are left out
# (CI runs everything).
test-fast: $(VENV)/.installed
	$(PY) -m pytest tests -m "not slow"

bench: $(VENV)/.installed
	$(PY) benchmarks/translator_eng_fra.py
