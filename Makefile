# Two commands do all the set-up on a fresh machine:
#   make seed   - create .venv, install, run the seed comparison (both models, retention tables, summary)
#   make test   - create .venv, install, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv venv-gpu seed fair test test-fast bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, from the pinned CPU build: an unpinned resolve would pull the multi-GB CUDA build.
	$(BIN)/pip install -q -c requirements.lock torch==2.13.0
	$(BIN)/pip install -q -c requirements.lock -e ".[dev]"
	touch $@

# A machine with an NVIDIA GPU: the same environment with PyPI's CUDA build of torch, pinned by
# requirements-gpu.lock; it marks .venv installed, so seed/test use it (docs/hardware.md).
venv-gpu: pyproject.toml requirements-gpu.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements-gpu.lock torch==2.13.0
	$(BIN)/pip install -q -c requirements-gpu.lock -e ".[dev]"
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch ' + torch.__version__ + ' sees no GPU')"
	touch $(VENV)/.installed

seed: venv
	$(BIN)/python -m nested_learning.train experiment=seed

fair: venv
	$(BIN)/python -m nested_learning.train experiment=fair

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

bench: venv
	$(BIN)/python scripts/bench_framework.py

clean:
	rm -rf $(VENV) outputs/runs outputs/multiruns
