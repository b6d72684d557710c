#!/usr/bin/env bash
# One run on a machine with a GPU: train gpu-128 for MINUTES of wall clock from the data pack, bring back what matters.
#
#   scripts/device_train.sh MINUTES [key=value ...] [--init-from CHECKPOINT | --resume]   (passed on to python -m train)
#
# Environment (all optional): OUT (default ./out; the GPU machine sets it), PACK (pack/gpu-128.npz),
# CONFIG (gpu-128), RUN_DIR (a fresh temporary folder), PYTHON (python3), PEAK_SECONDS (2: the matmul
# benchmark's length), LATENCY_REPEATS (20), RESUME (a folder holding state.pt.NNN parts from an
# earlier call: training continues from them), PROFILE_STEPS (10: steps timed, then profiled, after training).
#
# Writes into $OUT: device.log (everything printed), device.json (environment, bf16 matmul peak,
# images/s per stage, FLOPs per image, fraction of the peak, state form, inference latency),
# config.json + model.safetensors (the EMA export, fp16), samples.png (the last grid under two
# earlier ones) and state.pt.NNN (the training state, split; as exact as fits in what comes back).
# device.json also gets "profile": wall ms per step, the step's phases, kernel launches, the top ops.
# Each step runs even if an earlier one failed; the exit status is the training's (3: no usable pack).
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 MINUTES [key=value ...]" >&2
  exit 2
fi
MINUTES=$1
shift
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
PACK=${PACK:-pack/gpu-128.npz}
CONFIG=${CONFIG:-gpu-128}
PYTHON=${PYTHON:-python3}
RUN_DIR=${RUN_DIR:-$(mktemp -d /tmp/twingan-run.XXXXXX)}
mkdir -p "$OUT" "$RUN_DIR"
OUT=$(cd "$OUT" && pwd)
RUN_DIR=$(cd "$RUN_DIR" && pwd)
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1
main() {
  echo "== $(date -u +%FT%TZ) device_train.sh $MINUTES min, pack $PACK, config $CONFIG, run $RUN_DIR"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm \
    --format=csv || echo "no nvidia-smi"
  $PYTHON -m train.device.device env --json "$RUN_DIR/peak.json" --seconds "${PEAK_SECONDS:-2}" --pack "$PACK"
  if [ $? -eq 3 ]; then
    echo "the pack is missing or unreadable: nothing to train on"
    return 3
  fi

  echo "== train"
  resume=()
  if [ -n "${RESUME:-}" ]; then
    $PYTHON -c "import sys; from pathlib import Path; from train.device.device import join_parts; \
  print(join_parts(Path(sys.argv[1]), Path(sys.argv[2])))" "$RESUME" "$RUN_DIR/checkpoint.pt" && resume=(--resume)
  fi
  # The loop stops itself before the budget and exports; SIGTERM (stop, checkpoint, export) is the backstop.
  limit=$($PYTHON -c "print(int(float('$MINUTES') * 60 + 90))")
  timeout --signal=TERM --kill-after=30 "$limit" $PYTHON -m train --config "$CONFIG" --no-progress \
    ${resume[@]+"${resume[@]}"} "pack=$PACK" "budget_minutes=$MINUTES" "run_dir=$RUN_DIR" "$@" | tee "$RUN_DIR/train.out"
  train_rc=${PIPESTATUS[0]}
  echo "training exit status: $train_rc"

  echo "== collect"
  $PYTHON -m train.device.device collect "$RUN_DIR" "$OUT" || echo "collect failed"
  echo "== where a training step's time goes"
  if [ -f "$RUN_DIR/checkpoint.pt" ]; then
    $PYTHON -m train.device.device profile "$RUN_DIR" "$OUT" --steps "${PROFILE_STEPS:-10}" || echo "profile failed"
  else
    echo "no checkpoint in $RUN_DIR: profile skipped"
  fi
  echo "== inference latency"
  if [ -f "$OUT/model.safetensors" ]; then
    $PYTHON -m train.device.device latency "$OUT" --pack "$PACK" --repeats "${LATENCY_REPEATS:-20}" || echo "latency failed"
  else
    echo "no export in $OUT: latency skipped"
  fi
  echo "== $(date -u +%FT%TZ) done; in $OUT:"
  ls -l "$OUT"
  return "$train_rc"
}

main "$@" 2>&1 | tee -a "$OUT/device.log"
exit "${PIPESTATUS[0]}"
