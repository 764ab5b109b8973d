# Two entry points, each setting up its own virtual environment in .venv when needed:
#   make demo   install the pinned run-time packages and run the tutorial (torchlinreg fit)
#   make test   install the pinned test packages (and Chromium, for the report's browser test),
#               then run the whole test suite, and the numeric tests again on two other BLAS code
#               paths (MKL_CBWR), which stand in for other CPUs
#   make fuzz   random exploration: SEED=<seed> (default: a fresh one, printed), EXAMPLES=<cases
#               per property> (default 1000); rerun a failure with the SEED and EXAMPLES it printed
#   make soak   random SIGKILLs during model saves, checkpointed fits and output writes, and pairs of fits
#               into one folder (scripts/soak.py; not in `make test`): SOAK_SEED (default 15), KILLS (300),
#               PAIRS (50); it prints every failure with how to rerun it, and exits 1 on any
# A second run skips the installs: each is redone only when its requirements file changes.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= torchlinreg-output

# The tests whose results depend on how BLAS/LAPACK round (QR, Gram, statistics, streaming).
NUMERIC_TESTS := tests/test_solve.py tests/test_solve_blocks.py tests/test_gram.py tests/test_statistics.py \
	tests/test_stream.py tests/test_estimator.py tests/test_diagnostics.py tests/test_offsets_wide.py tests/test_real_data.py \
	tests/test_kernels.py
# MKL's code paths besides the native one: another CPU takes another path (AMD vs Intel, AVX2 vs AVX-512).
# Each comes with an OpenBLAS kernel of the same age for NumPy's products (what `solve` runs without PyTorch).
OTHER_BLAS_PATHS ?= COMPATIBLE:Nehalem AVX2:Haswell
SEED ?=
EXAMPLES ?= 1000

.PHONY: demo test fuzz soak clean

demo: $(VENV)/.run-installed
	$(VENV)/bin/torchlinreg fit --out $(OUT)

test: $(VENV)/.test-installed
	@bash scripts/install-chromium
	$(PY) -m pytest $(PYTEST_ARGS)
	@for pair in $(OTHER_BLAS_PATHS); do \
		mkl=$${pair%%:*}; openblas=$${pair##*:}; \
		echo "numeric tests on MKL's $$mkl code path and OpenBLAS's $$openblas kernels (MKL_CBWR=$$mkl OPENBLAS_CORETYPE=$$openblas):"; \
		MKL_CBWR=$$mkl OPENBLAS_CORETYPE=$$openblas $(PY) -m pytest -q -m "not slow" $(NUMERIC_TESTS) || exit 1; \
	done

fuzz: $(VENV)/.test-installed
	TORCHLINREG_FUZZ_SEED=$(SEED) TORCHLINREG_FUZZ_EXAMPLES=$(EXAMPLES) $(PY) -m pytest --fuzz $(PYTEST_ARGS)

soak: $(VENV)/.test-installed
	SOAK_SEED=$(SOAK_SEED) KILLS=$(KILLS) PAIRS=$(PAIRS) $(PY) scripts/soak.py

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
