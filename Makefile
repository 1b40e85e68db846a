# The README's two commands are `make demo` and `make test`; both set up first.
PYTHON ?= python3

.PHONY: setup demo test test-slow bench reproduce clean

setup: .setup.stamp

.setup.stamp: pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh
	@touch $@

demo: setup
	$(PYTHON) -m robustlab train --config configs/standard_fmnist.yaml --resume
	$(PYTHON) -m robustlab eval runs/standard_fmnist --suite quick

test: setup
	$(PYTHON) -m pytest

test-slow: setup
	$(PYTHON) -m pytest -m slow

reproduce: setup
	$(PYTHON) -m robustlab reproduce --budget small

bench: setup
	$(PYTHON) benchmarks/train_speed.py

clean:
	rm -rf .setup.stamp .pytest_cache build src/*.egg-info
