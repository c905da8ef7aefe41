# One-command workflows. `make test` works from a fresh clone with nothing installed: it creates
# the virtual environment, installs torch (CPU build) and the build/test dependencies, builds the
# C++ extension and runs the test suite.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# The CUDA compile check: a CUDA build of torch and the architectures to compile for.
CUDA_VENV ?= .venv-cuda
CUDA_TORCH ?= torch==2.14.1
TORCH_CUDA_ARCH_LIST ?= 9.0

PY := $(VENV)/bin/python
PIP := $(VENV)/bin/python -m pip
# Build requirements are read from pyproject.toml: the extension is built without isolation.
BUILD_REQS = $(shell $(PYTHON) -c "import tomllib; print(' '.join(repr(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))")

.PHONY: demo test build lint format bench cuda-check clean

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q $(BUILD_REQS) numpy
	touch $@

build: $(VENV)/.deps
	$(PIP) install -q --no-build-isolation -e ".[test,dev]"

test: build
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q

# The whole pipeline on synthetic street scenes into demo-output/ (about 10 minutes on a 2-core
# CPU; a GPU is used when present). DEMO_ARGS=--quick for the few-second version.
DEMO_ARGS ?=
demo: build
	$(VENV)/bin/panonet demo $(DEMO_ARGS)

lint: $(VENV)/.deps build
	$(VENV)/bin/ruff check python tests benchmarks
	$(VENV)/bin/ruff format --check python tests benchmarks

format: build
	$(VENV)/bin/ruff check --fix python tests benchmarks
	$(VENV)/bin/ruff format python tests benchmarks

bench: build
	$(PY) benchmarks/bench_discriminative_loss.py
	$(PY) benchmarks/bench_mean_shift.py
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_evaluation.py

# Compiles the CUDA kernels against a CUDA build of torch (no GPU needed) and checks that every
# op has its CUDA kernel registered; then runs the test suite on the CPU against that build.
cuda-check:
	$(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install -q --upgrade pip
	$(CUDA_VENV)/bin/python -m pip install -q "$(CUDA_TORCH)"
	$(CUDA_VENV)/bin/python -m pip install -q $(BUILD_REQS) numpy
	PANONET_CUDA=ON TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" \
		$(CUDA_VENV)/bin/python -m pip install -q --no-build-isolation -e ".[test]" \
		--config-settings=build-dir=build/cuda
	PANONET_EXPECT_CUDA=1 HYPOTHESIS_PROFILE=ci $(CUDA_VENV)/bin/python -m pytest -q

clean:
	rm -rf build $(VENV) $(CUDA_VENV) .pytest_cache .hypothesis
