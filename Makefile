# Two commands on a fresh machine with only python3:
#   make report   -> .venv, install, build report/index.html from the embedded data
#   make test     -> .venv, install .[dev], run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: report test validate bench clean references

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[web]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

report: $(VENV)/.installed
	$(BIN)/python -m lnsynth report --out report/

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

validate: $(VENV)/.installed
	$(BIN)/python -m lnsynth validate

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/pairwise.py

references:
	Rscript tests/reference/make_pairwise.R

clean:
	rm -rf $(VENV) report build *.egg-info
