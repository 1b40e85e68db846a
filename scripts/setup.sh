#!/usr/bin/env bash
# Sets up robustlab; safe to run again. What it installs, and where:
#   - Python packages go into one environment, never into the system's interpreter (Debian and
#     Ubuntu refuse that, PEP 668, and it would change other programs): the active virtual
#     environment ($VIRTUAL_ENV, or conda's $CONDA_PREFIX, conda's base included when it is
#     active) when there is one, else the project's own .venv, made from $PYTHON (default
#     python3) with --system-site-packages so that a torch installed system-wide (a CUDA build,
#     say) is seen and kept. The Makefile keeps its set-up stamps in that environment.
#     Into it: torch==2.13.0 (the CPU build) only when it cannot import torch; robustlab itself
#     (editable); with --test, the test and dev extras (pytest, ART, captum, jsonschema, ruff, ...).
#   - Debian packages (apt-get, as root or through sudo), only those missing: dataset-fashion-mnist
#     (the default data set, in /usr/share/datasets/fashion-mnist), python3-venv when the
#     interpreter cannot make a virtual environment, and with --test chromium (about 350 MB, for
#     the one test that renders report.html in a headless browser; without it that test is skipped).
#
# Usage: scripts/setup.sh           what `make demo` needs
#        scripts/setup.sh --test    also what `make test` needs
#        scripts/setup.sh --python  print the environment's interpreter (the Makefile runs it)
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
cd "$(dirname "$0")/.."
BASE=${PYTHON:-python3}
FMNIST=/usr/share/datasets/fashion-mnist

env_python() {
  if [ -n "${VIRTUAL_ENV:-}" ]; then echo "$VIRTUAL_ENV/bin/python"
  elif [ -n "${CONDA_PREFIX:-}" ]; then echo "$CONDA_PREFIX/bin/python"
  else echo "$PWD/.venv/bin/python"; fi
}

TEST=""
case "${1:-}" in
  "") ;;
  --test) TEST=1 ;;
  --python) env_python; exit 0 ;;
  *) echo "setup: unknown argument ${1}; use scripts/setup.sh [--test | --python]" >&2; exit 2 ;;
esac

apt_install() {  # apt_install PACKAGE... (a warning, not a failure, where apt-get is not usable)
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || command -v sudo >/dev/null 2>&1; }; then
    echo "setup: installing Debian package(s) $* (apt-get)"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "setup: warning: apt-get is not usable here; not installed: $*" >&2
    return 1
  fi
}

missing=()
ls "$FMNIST"/train-images-idx3-ubyte* >/dev/null 2>&1 || missing+=(dataset-fashion-mnist)
[ -n "$TEST" ] && ! command -v chromium >/dev/null 2>&1 && missing+=(chromium)
PY=$(env_python)
OWN="$PWD/.venv/bin/python"
usable() { "$1" -m pip --version >/dev/null 2>&1; }  # a python with pip: what everything below needs
if [ "$PY" != "$OWN" ] && ! usable "$PY"; then
  echo "setup: the active environment has no working $PY with pip; fix it, or deactivate it to use" \
       "the project's .venv" >&2
  exit 1
fi
usable "$PY" || "$BASE" -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ] && ! apt_install "${missing[@]}"; then
  echo "setup: without dataset-fashion-mnist, put Fashion-MNIST's IDX files in a folder and pass" \
       "data.data_dir=FOLDER; without chromium the report rendering test is skipped" >&2
fi

if ! usable "$PY"; then  # only the project's own .venv gets here: (re)make it
  echo "setup: making the project environment .venv from $("$BASE" -c 'import sys; print(sys.executable)')" \
       "(it also sees that interpreter's packages)"
  rm -rf .venv
  if ! "$BASE" -m venv --system-site-packages .venv || ! usable "$PY"; then
    rm -rf .venv  # a half-made one would pass for made next time
    echo "setup: could not make .venv with $BASE -m venv; install Debian's python3-venv" \
         "(apt-get install python3-venv) or set PYTHON=another python3" >&2
    exit 1
  fi
fi
echo "setup: Python packages go into $(dirname "$(dirname "$PY")")"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 (CPU build); install a CUDA build first to keep it"
  "$PY" -m pip install -q torch==2.13.0
fi

if [ -n "$TEST" ]; then
  "$PY" -m pip install -q -e ".[test,dev]"
else
  "$PY" -m pip install -q -e .
fi
