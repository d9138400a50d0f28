# Two commands on a fresh machine with only python3:
#   make report   -> .venv, install .[web,distributed] (the simulator section fans out with dask.distributed),
#                    build report/index.html from the embedded data
#   make test     -> .venv, install .[dev], run the whole test suite
#   make lint     -> ruff check, ruff format --check and mypy (pyproject.toml)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: report test lint validate bench clean references

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[web,distributed]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

report: $(VENV)/.installed
	$(BIN)/python -m lnsynth report --out report/

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# static checks (configured in pyproject.toml; the same as the pre-commit hooks)
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

validate: $(VENV)/.installed
	$(BIN)/python -m lnsynth validate

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/pairwise.py
	$(BIN)/python benchmarks/network.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/multilevel.py
	$(BIN)/python benchmarks/selmodel.py
	$(BIN)/python benchmarks/robust_permutest.py

# regenerate every reference file with R (metafor; make_glmm.R also needs lme4, make_network_extra.R metadat,
# make_selmodel.R metadat and numDeriv, make_robust.R clubSandwich:
# apt-get install r-cran-lme4 r-cran-metadat r-cran-numderiv r-cran-clubsandwich)
references:
	Rscript tests/reference/make_effects.R
	Rscript tests/reference/make_pairwise.R
	Rscript tests/reference/make_sensitivity.R
	Rscript tests/reference/make_network.R tests/reference/network_reference.json
	Rscript tests/reference/make_network_extra.R tests/reference/network_extra_reference.json
	Rscript tests/reference/make_glmm.R
	Rscript tests/reference/make_selmodel.R
	Rscript tests/reference/make_multilevel.R
	Rscript tests/reference/make_tau2_estimators.R
	Rscript tests/reference/make_robust.R
	Rscript tests/reference/make_permutest.R
	Rscript tests/reference/make_location_scale.R
	Rscript tests/reference/make_firth.R

clean:
	rm -rf $(VENV) report build *.egg-info
