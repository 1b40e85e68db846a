#!/usr/bin/env bash
# Installs what robustlab needs and is missing; safe to run again.
#   - Fashion-MNIST (the default dataset) from Debian's dataset-fashion-mnist package, and
#     Debian's chromium (the test that opens report.html in a headless browser)
#   - torch==2.13.0 (the CPU build) only when no torch is importable, so a CUDA build is kept
#   - robustlab itself, editable, with its test and dev extras
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FMNIST=/usr/share/datasets/fashion-mnist

missing=()
ls "$FMNIST"/train-images-idx3-ubyte* >/dev/null 2>&1 || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1; }; then
    echo "setup: installing Debian package(s) ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "setup: warning: apt-get is not usable here; missing ${missing[*]}. Put Fashion-MNIST's" \
         "IDX files in a folder and pass data.data_dir=FOLDER; without chromium the report" \
         "rendering test is skipped" >&2
  fi
fi

if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 (CPU build); install a CUDA build first to keep it"
  "$PYTHON" -m pip install -q torch==2.13.0
fi

"$PYTHON" -m pip install -q -e ".[test,dev]"
