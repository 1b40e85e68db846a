#!/usr/bin/env bash
# Installs what robustlab needs and is missing; safe to run again.
#   - Fashion-MNIST (the default dataset) from Debian's dataset-fashion-mnist package
#   - torch==2.13.0 (the CPU build) only when no torch is importable, so a CUDA build is kept
#   - robustlab itself, editable, with its test and dev extras
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FMNIST=/usr/share/datasets/fashion-mnist

if ! ls "$FMNIST"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: warning: Fashion-MNIST is not in $FMNIST and apt-get is not usable here;" \
         "put its IDX files in a folder and pass data.data_dir=FOLDER" >&2
  fi
fi

if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 (CPU build); install a CUDA build first to keep it"
  "$PYTHON" -m pip install -q torch==2.13.0
fi

"$PYTHON" -m pip install -q -e ".[test,dev]"
