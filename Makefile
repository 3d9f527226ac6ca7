# Two commands: `make demo` and `make test`. Both create the virtual environment when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch on machines without an NVIDIA GPU (a bare `torch` from PyPI is a
# multi-GB CUDA build); the default (CUDA) build where nvidia-smi finds a GPU.
TORCH ?= $(if $(shell nvidia-smi -L 2>/dev/null),torch,torch==2.13.0)
EXTRAS ?= dev

.PHONY: install demo test clean-store

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/distillbench grid runs/demo.yaml

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

clean-store:
	rm -rf .distillbench
