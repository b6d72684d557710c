#!/usr/bin/env bash
# The bundled checkpoint's recipe on a 2-core CPU, in the phases it was trained in:
#
#   scripts/train_cpu.sh [RUN_DIR] [key=value ...]     (default RUN_DIR: runs/cpu-align)
#
# 1. cpu-align from scratch to PHASE1_IMAGES (57,500: 16 -> 32 -> 64 px, about 2 h);
# 2. the frozen tagger's CE doubled and every hair/eye colour drawn uniformly, to PHASE2_IMAGES
#    (72,000), for the rare eye colours;
# 3. plus the shift consistency loss (w_shift=5), against eyes and lines drawn at the same place for
#    every input, to PHASE3_IMAGES (87,000);
# 4. the same with w_shift=15 to PHASE4_IMAGES (120,000);
# 5. a new run folder, RUN_DIR/phase5, started from phase 4's export (--init-from: fresh Adam), with a
#    fresh He-initialised discriminator, 6,000 CelebA faces and upload-like jitter of the selfies, to
#    TOTAL_IMAGES (150,000). Its export, RUN_DIR/phase5/export, is the bundled checkpoint.
# key=value overrides go to every phase; each phase's own settings win over them. Each phase resumes
# RUN_DIR/checkpoint.pt, so the script can be stopped and started again: a phase whose images were
# already seen ends at once. Phase 4's export is RUN_DIR/export (`python -m train.evaluation RUN_DIR/export`).
set -euo pipefail
RUN_DIR=${1:-runs/cpu-align}
shift || true
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."
resume=()
if [ -f "$RUN_DIR/checkpoint.pt" ]; then resume=(--resume); fi
"$PYTHON" -m train --config cpu-align "$@" run_dir="$RUN_DIR" total_images="${PHASE1_IMAGES:-57500}" "${resume[@]}"
"$PYTHON" -m train --config cpu-align "$@" run_dir="$RUN_DIR" total_images="${PHASE2_IMAGES:-72000}" \
  w_tagger=2.0 uniform_color_prob=1.0 --resume
"$PYTHON" -m train --config cpu-align "$@" run_dir="$RUN_DIR" total_images="${PHASE3_IMAGES:-87000}" \
  w_tagger=2.0 uniform_color_prob=1.0 w_shift=5.0 --resume
"$PYTHON" -m train --config cpu-align "$@" run_dir="$RUN_DIR" total_images="${PHASE4_IMAGES:-120000}" \
  w_tagger=2.0 uniform_color_prob=1.0 w_shift=15.0 --resume
start=(--init-from "$RUN_DIR/export")
if [ -f "$RUN_DIR/phase5/checkpoint.pt" ]; then start=(--resume); fi
"$PYTHON" -m train --config cpu-align "$@" run_dir="$RUN_DIR/phase5" total_images="${TOTAL_IMAGES:-150000}" \
  w_tagger=2.0 uniform_color_prob=1.0 w_shift=15.0 source_attributes_limit=6000 upload_jitter=0.5 \
  d_init=he init_discriminators=false threads=1 "${start[@]}"
