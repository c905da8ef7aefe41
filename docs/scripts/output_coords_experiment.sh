#!/usr/bin/env bash
# Issue 14 lever (docs/RESULTS.md): stage 2 with the coordinates also added to the embedding
# (PanoNet's coord_output = S: the network predicts offsets from each pixel's position instead
# of positions; not in the paper), with the coordinate input as usual, from the stage-1 model of
# seed 0 (or SEED) with paper_experiments.sh's recipe, data and evaluation; then the twin tests
# and the twins' separation against the bandwidth. Plain stage-2 runs named after OUT
# (coords_true, coords_false) are trained and compared too. Each stage-2 run ~10 min on 2 cores,
# its evaluation and twin tests ~3 min. Resumable.
# Usage: [SEED=1] [SCALES="4 8"] bash docs/scripts/output_coords_experiment.sh [OUT] [BASELINE_RUN...]
set -euo pipefail
source "$(dirname "$0")/seed0_lever.sh"
shift || true  # OUT, which seed0_lever.sh read; the rest name baseline runs

RUNS=()
for s in ${SCALES:-8}; do
  train $OUT/coord_output$s $OUT/data "${STAGE1[@]}" --set coord_output=$s.0
  RUNS+=(coord_output$s)
done
plain "$@"
RUNS+=("$@")
evaluate "${RUNS[@]}"
twin_tests coord_output${SCALES// /_}_ "${RUNS[@]}"
separation "${RUNS[@]}"
echo ALL_DONE
