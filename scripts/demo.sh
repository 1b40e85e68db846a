#!/usr/bin/env bash
# `make demo`: what a defense buys. Trains a standard and an adversarially trained (fast_at: FGSM
# with a random start, Wong et al. 2020) small_cnn on Fashion-MNIST, evaluates both with the quick
# suite (clean, FGSM, PGD-20, accuracy vs eps, example images and the gradient-masking checks on
# the first 500 test images) and compares them, paired on the same images. Run it again and
# the finished steps are reused (--resume, the suite's state).
# Usage: scripts/demo.sh [PYTHON]   (the Makefile passes the project environment's interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$(bash scripts/setup.sh --python)}
EPOCHS=2  # of the full 60,000 training images; the configs' own schedules are longer (15)
IMAGES=500  # test images the quick suite attacks (its default 1,000 takes the demo past 10 minutes)

for recipe in standard fast_at; do
  "$PY" -m robustlab train --config "configs/${recipe}_fmnist.yaml" "name=demo_${recipe}" \
    "train.epochs=$EPOCHS" --resume
done
for recipe in standard fast_at; do
  "$PY" -m robustlab eval "runs/demo_${recipe}" --suite quick --limit "$IMAGES" > "runs/demo_${recipe}.eval.txt"
  tail -n 1 "runs/demo_${recipe}.eval.txt"
done
"$PY" -m robustlab compare runs/demo_standard runs/demo_fast_at --out runs/demo_compare
