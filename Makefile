# The README's two commands are `make demo` and `make test`; both set up first (scripts/setup.sh
# says what it installs and where: the active virtual environment, else the project's .venv).
# The stamps live in that environment, so a new or deleted environment is set up again.
PY := $(shell bash scripts/setup.sh --python)
ENV_DIR := $(abspath $(dir $(PY))..)
SETUP := $(ENV_DIR)/.robustlab-setup
SETUP_TEST := $(ENV_DIR)/.robustlab-setup-test

.PHONY: setup setup-test demo test test-slow bench reproduce clean

setup: $(SETUP)
setup-test: $(SETUP_TEST)

$(SETUP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	@touch "$@"

$(SETUP_TEST): $(SETUP)
	bash scripts/setup.sh --test
	@touch "$@"

demo: setup
	bash scripts/demo.sh "$(PY)"

test: setup-test
	"$(PY)" -m pytest

test-slow: setup-test
	"$(PY)" -m pytest -m slow

reproduce: setup
	"$(PY)" -m robustlab reproduce --budget small

bench: setup-test
	"$(PY)" benchmarks/train_speed.py

clean:
	rm -rf "$(SETUP)" "$(SETUP_TEST)" .pytest_cache build src/*.egg-info
