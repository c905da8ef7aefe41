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

.PHONY: demo test build lint format bench cuda-check gpu-check gpu-wheels clean

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

# The whole pipeline on synthetic street scenes into demo-output/ (13-15 minutes with the
# setup on a 2-core CPU; a GPU is used when present). DEMO_ARGS=--quick for the few-second
# version. OpenMP keeps its default waiting: with the data loaded in-process a demo step took
# 71 ms idle and 257 ms beside a busy process (2 cores), against 200 / 261 ms with
# OMP_WAIT_POLICY=PASSIVE and 74 / 1169 ms with GOMP_SPINCOUNT=20000.
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
	$(PY) benchmarks/bench_train.py

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

# On a machine with an NVIDIA GPU, a CUDA build of torch in $(PYTHON) and no network: builds the
# CUDA kernels against that torch, runs the CUDA tests and the kernel benchmarks, each step with
# a timeout (6 minutes in all); logs in build/gpu-check/, JSON in benchmarks/results/. See
# scripts/gpu_check.sh (GPU_CHECK_ARGS=--dry-run lists the steps; GPU_CHECK_ARGS=--pipeline also
# runs the demo, bench_model and panonet bench with the demo's checkpoint, 9 minutes in all).
GPU_CHECK_ARGS ?=
gpu-check:
	PYTHON=$(PYTHON) bash scripts/gpu_check.sh $(GPU_CHECK_ARGS)

# The pure-Python wheels that the GPU machine lacks (cityscapesscripts and the dependencies it does
# not find there), downloaded into .whl/ on a networked machine; gpu-check installs them.
GPU_WHEELS ?= cityscapesscripts==2.3.0 appdirs==1.4.4 pyquaternion==0.9.9 coloredlogs==15.0.1 \
	humanfriendly==10.0
GPU_PYTHON_VERSION ?= 3.12
gpu-wheels:
	rm -rf .whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: \
		--python-version $(GPU_PYTHON_VERSION) -d .whl $(GPU_WHEELS)
	ls .whl

clean:
	rm -rf build $(VENV) $(CUDA_VENV) .pytest_cache .hypothesis
