.PHONY: install test test-all lint format bench clean

TORCH_INDEX ?=

install:  ## CPU set-up (GPU users: skip the torch line and keep their own build)
	pip install torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	pip install -e ".[dev]"

test:  ## the fast suite CI runs (slow end-to-end runs excluded)
	python -m pytest

test-all:  ## everything, slow end-to-end runs included
	python -m pytest -m ""

lint:
	ruff check trl_reasoning tests benchmarks

format:
	ruff format trl_reasoning tests benchmarks
	ruff check --fix trl_reasoning tests benchmarks

bench:
	python benchmarks/verifier_speed.py

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
