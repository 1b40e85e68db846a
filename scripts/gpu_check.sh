#!/usr/bin/env bash
# The Speed issue's GPU check, sized for one 10-minute device command (the `device` tool's `run`):
# writes everything under $OUT (default runs/gpu_check). Steps, each recorded as it ends:
#   1. benchmarks/gpu_check.py: training images/s and peak memory (small_cnn on Fashion-MNIST's
#      shape, wrn28_10 and preact_resnet18 on CIFAR's; AMP off / bf16 / fp16, channels_last,
#      torch.compile), PGD-20 against 20 passes, the reference AutoAttack's images/s
#   2. torchrun with 2 processes on the one GPU: DDP over NCCL (gloo on the CPU), 1 epoch
#   3. robustlab reproduce --budget small --only madry,trades,agkd_bml: its wall time
# Usage: scripts/gpu_check.sh [--dry-run]   (--dry-run: the CPU, tiny sizes, a few iterations)
set -uo pipefail  # not -e: a failing step is recorded and the next one runs
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
PY=${PYTHON:-$(bash scripts/setup.sh --python)}
[ -x "$PY" ] || PY=python3
DRY=""
case "${1:-}" in
  "") ;;
  --dry-run) DRY=--dry-run ;;
  *) echo "gpu_check: unknown argument $1; use scripts/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
step() {  # step NAME COMMAND...: runs it, logs it, records its wall time and exit status
  local name=$1; shift
  local start=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"wall_s\": $((SECONDS - start))}" | tee -a "$OUT/steps.jsonl"
}

{ nvidia-smi || echo "no nvidia-smi"; "$PY" -c "import torch; print(torch.__version__, torch.version.cuda)"; } \
  > "$OUT/environment.txt" 2>&1
step benchmarks "$PY" benchmarks/gpu_check.py --out "$OUT" $DRY

if [ -n "$DRY" ]; then
  DDP=(data.name=synthetic "data.options={train_size: 64, test_size: 32}" model.name=lenet data.batch_size=16
       train.epochs=1 train.monitor_images=0 train.device=cpu)
  ONLY=(--only fast_at --dataset synthetic)  # no teacher, no detection: the cheapest real recipe
else
  DDP=(data.name=fashion-mnist data.train_limit=20000 model.name=small_cnn train.epochs=1 train.monitor_images=0)
  ONLY=(--only madry,trades,agkd_bml)
fi
step ddp "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m robustlab train "${DDP[@]}" \
  "out_dir=$OUT/runs" name=ddp --force
step reproduce "$PY" -m robustlab reproduce --budget small "${ONLY[@]}" --out "$OUT/reproduce" --no-pages
echo "gpu_check: results in $OUT (steps.jsonl, gpu_check.jsonl, *.log)"
