# The README's two commands are `make demo` and `make test`; both set up first (scripts/setup.sh
# says what it installs and where: the active virtual environment, else the project's .venv).
PY := $(shell bash scripts/setup.sh --python)

.PHONY: setup setup-test demo test test-slow bench reproduce clean

setup: .setup.stamp
setup-test: .setup-test.stamp

$(PY):
	bash scripts/setup.sh

.setup.stamp: pyproject.toml scripts/setup.sh | $(PY)
	bash scripts/setup.sh
	@touch $@

.setup-test.stamp: .setup.stamp
	bash scripts/setup.sh --test
	@touch $@

demo: setup
	bash scripts/demo.sh $(PY)

test: setup-test
	$(PY) -m pytest

test-slow: setup-test
	$(PY) -m pytest -m slow

reproduce: setup
	$(PY) -m robustlab reproduce --budget small

bench: setup-test
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf .setup.stamp .setup-test.stamp .pytest_cache build src/*.egg-info
