# Two entry points, each setting up its own virtual environment in .venv when needed:
#   make demo   install the pinned run-time packages and run the tutorial (torchlinreg fit)
#   make test   install the pinned test packages (and Chromium, for the report's browser test),
#               then run the whole test suite
# A second run skips the installs: each is redone only when its requirements file changes.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= torchlinreg-output

.PHONY: demo test clean

demo: $(VENV)/.run-installed
	$(VENV)/bin/torchlinreg fit --out $(OUT)

test: $(VENV)/.test-installed
	@bash scripts/install-chromium
	$(PY) -m pytest $(PYTEST_ARGS)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: requirements/run.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/run.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.test-installed: requirements/test.txt $(VENV)/.run-installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/test.txt
	touch $@

clean:
	rm -rf $(VENV) $(OUT) build src/*.egg-info
