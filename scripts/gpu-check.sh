#!/usr/bin/env bash
# Every GPU check of resnetlab, in tiers that each fit one call of a lent GPU machine with margin.
#
#   scripts/gpu-check.sh --prepare       copy what the machine needs into git-ignored data/, print the `carry` list
#   scripts/gpu-check.sh TIER            on a CUDA machine: 1 tests + ResNet-20 speed + demo (limits sum to 420 s),
#                                        2 compiled modes + ResNet-50 at 224 px (380 s),
#                                        3 time to 92% on Fashion-MNIST + the GPU recipe candidates (540 s)
#   scripts/gpu-check.sh --dry TIER      the same steps on this CPU at tiny sizes (a typo costs no GPU minute)
#
# Each step runs under its own `timeout` and is recorded as soon as it ends, so a step cut short leaves the
# others: $OUT/tierN.log (everything printed) and $OUT/tierN.json (each step's status, wall time and figures).
# $OUT defaults to ./gpu-check-out. It runs from the checkout with PYTHONPATH=src and installs nothing; the
# device machine has torch, torchvision, timm, pytest and matplotlib of its own (PyTorch 2.11 when last seen).
# Exit status: 0 when every step passed, 1 when one failed or timed out, 2 for a wrong call or no CUDA device.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python # here; the device machine has no .venv
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export RESNETLAB_DATA=${RESNETLAB_DATA:-$ROOT/data}
CARRY_DATA=data/fashion-mnist
TIMM_TRAIN=${TIMM_TRAIN:-data/timm/train.py}
CANDIDATES=scripts/gpu-candidates

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

if [ "${1:-}" = --prepare ]; then
  # Fashion-MNIST's four .gz files (from wherever resnetlab finds them) into data/fashion-mnist/.
  "$PY" scripts/gpu_check.py prepare "$CARRY_DATA" || exit 2
  carry="\"$CARRY_DATA\""
  if [ -f "$TIMM_TRAIN" ]; then carry="$carry, \"$(dirname "$TIMM_TRAIN")\""; fi
  echo "carry: [$carry]"
  echo "then: run(command='bash scripts/gpu-check.sh 1', carry=[$carry], timeout_s=480)  (tier 2: 440, tier 3: 600)"
  [ -f "$TIMM_TRAIN" ] || echo "(tier 3's timm arm also needs timm's train.py and validate.py in $(dirname "$TIMM_TRAIN")/)"
  exit 0
fi

DRY=0
if [ "${1:-}" = --dry ]; then
  DRY=1
  shift
fi
TIER=${1:-}
case "$TIER" in 1 | 2 | 3) ;; *) usage ;; esac

OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT" || exit 2
LOG=$OUT/tier$TIER.log
JSON=$OUT/tier$TIER.json
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: >"$LOG"
rm -f "$JSON"
export WORK
FAILED=0

# step NAME SECONDS 'COMMAND': run it under its own timeout (output to the screen and the tier's log), then record
# its status, wall time and figures in the tier's JSON. COMMAND may write figures to "$FIG" (a JSON file).
step() {
  local name=$1 limit=$2 command=$3
  [ "$DRY" = 1 ] && limit=$((limit * 4)) # the limits are a GPU's; a dry run on a (busy) CPU checks wiring, not speed
  export FIG=$WORK/$name.json
  echo "== $name (limit ${limit}s): $command" | tee -a "$LOG"
  local start_ns rc
  start_ns=$(date +%s%N)
  timeout --kill-after=10 "$limit" bash -c "$command" 2>&1 | tee -a "$LOG" "$WORK/$name.log"
  rc=${PIPESTATUS[0]}
  "$PY" scripts/gpu_check.py record "$JSON" "$name" "$rc" "$(($(date +%s%N) - start_ns))" \
    "$WORK/$name.log" "$FIG" "$limit" | tee -a "$LOG"
  [ "$rc" = 0 ] || FAILED=1
}

skip() { # skip NAME WHY: recorded as skipped, so the JSON says why a figure is missing
  echo "== $1 skipped: $2" | tee -a "$LOG"
  "$PY" scripts/gpu_check.py skip "$JSON" "$1" "$2"
}

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  TINY="epochs=1 limit_train=512 limit_val=256" # a run that checks the wiring, not the figures
  SPEED="--device cpu --steps 2 --batch-scale 0.02"
else
  DEVICE=cuda
  TINY=""
  SPEED="--device cuda"
fi
export DEVICE

"$PY" scripts/gpu_check.py init "$JSON" "$TIER" "$DRY" || exit 2 # the helper itself must work first
step versions 30 "$PY scripts/gpu_check.py versions \"\$FIG\""
if [ "$DRY" = 0 ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "no CUDA device here; \`scripts/gpu-check.sh --dry $TIER\` checks the same steps on a CPU" | tee -a "$LOG"
  exit 2
fi
step data 30 "$PY scripts/gpu_check.py find-data $CARRY_DATA"
HAVE_DATA=$("$PY" scripts/gpu_check.py passed "$JSON" data) # 1 or 0

# train_run NAME SECONDS RECIPE [KEY=VALUE ...]: one `resnetlab train` with its wall time and summary's figures.
train_run() {
  local name=$1 limit=$2 recipe=$3
  shift 3
  if [ "$HAVE_DATA" != 1 ]; then
    skip "$name" "no Fashion-MNIST (scripts/gpu-check.sh --prepare, then carry $CARRY_DATA)"
    return
  fi
  step "$name" "$limit" "$PY -m resnetlab train $recipe out=\$WORK/$name quiet=true device=$DEVICE $TINY $* &&
    $PY scripts/gpu_check.py run-figures \$WORK/$name \"\$FIG\""
}

case "$TIER" in
1)
  # The tests marked gpu (all skip on a CPU), then the other fast tests whose runs land on CUDA when there is one.
  # A file that fails to import (a missing package) is reported without stopping the rest.
  step pytest_gpu 90 "$PY -m pytest -m gpu -p no:cacheprovider -rfE --continue-on-collection-errors tests"
  CUDA_TESTS="tests/test_training.py tests/test_finetune_export.py tests/test_cuda_graphs.py tests/test_step_reads.py"
  CUDA_TESTS="$CUDA_TESTS tests/test_stream.py tests/test_resume.py"
  if [ "$DRY" = 1 ]; then
    step pytest_cuda 60 "$PY -m pytest -m 'not slow and not gpu' -p no:cacheprovider --collect-only $CUDA_TESTS"
  else
    step pytest_cuda 120 "$PY -m pytest -m 'not slow and not gpu' -p no:cacheprovider -rfE $CUDA_TESTS"
  fi
  step speed_resnet20 75 "$PY benchmarks/gpu_speed.py $SPEED --models resnet20 --modes eager,graphs --json \"\$FIG\""
  train_run demo 75 fashion_mnist_fast
  ;;
2)
  # Compiling dominates here (torch.compile of each arm's model, once per mode): each mode its own step.
  step speed_resnet20_compiled 80 "$PY benchmarks/gpu_speed.py $SPEED --models resnet20 --modes compile,compile+graphs \
    --json \"\$FIG\""
  if [ "$DRY" = 1 ]; then SPEED="--device cpu --steps 1 --batch-scale 0.01"; fi # ResNet-50 at 224 px: batch 2
  step speed_resnet50 90 "$PY benchmarks/gpu_speed.py $SPEED --models resnet50 --modes eager,graphs --json \"\$FIG\""
  step speed_resnet50_compile 75 "$PY benchmarks/gpu_speed.py $SPEED --models resnet50 --modes compile --json \"\$FIG\""
  if [ "$DRY" = 0 ]; then # CUDA graphs exist only on CUDA
    step speed_resnet50_compile_graphs 75 "$PY benchmarks/gpu_speed.py $SPEED --models resnet50 --modes compile+graphs \
      --json \"\$FIG\""
  fi
  ;;
3)
  ARMS=resnetlab,bare
  TIMM_ARGS=""
  if [ -f "$TIMM_TRAIN" ] && [ "$DRY" = 0 ]; then
    ARMS=$ARMS,timm
    TIMM_ARGS="--timm-train $TIMM_TRAIN"
  fi
  SHORT=""
  [ "$DRY" = 1 ] && SHORT="--epochs 1 --limit 2048"
  if [ "$HAVE_DATA" = 1 ]; then
    step time_to_accuracy 240 "$PY benchmarks/time_to_accuracy.py --device $DEVICE --arms $ARMS $TIMM_ARGS $SHORT \
      --json \"\$FIG\""
  else
    skip time_to_accuracy "no Fashion-MNIST (scripts/gpu-check.sh --prepare, then carry $CARRY_DATA)"
  fi
  # Candidates for the GPU recipes: measured here, shipped only with the figure they reach (selected on
  # validation, scored once on test). A dry run checks each recipe's settings, then trains a small net briefly.
  for candidate in fashion_mnist_gpu_fast fashion_mnist_gpu_best; do
    limit=40
    [ $candidate = fashion_mnist_gpu_best ] && limit=200
    if [ "$DRY" = 1 ]; then
      step "${candidate}_settings" 60 "$PY -m resnetlab train $CANDIDATES/$candidate.yaml --print-config >/dev/null"
      train_run "$candidate" 90 "$CANDIDATES/$candidate.yaml" model=resnet14
    else
      train_run "$candidate" $limit "$CANDIDATES/$candidate.yaml"
    fi
  done
  ;;
esac

"$PY" scripts/gpu_check.py summary "$JSON" | tee -a "$LOG"
exit "$FAILED"
