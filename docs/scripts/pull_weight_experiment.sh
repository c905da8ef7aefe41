#!/usr/bin/env bash
# Issue 14 lever (docs/RESULTS.md): stage 2 with the pull term L_var weighted 3x (loss.alpha = 3;
# the paper's eq. 5 has 1), with and without coordinates, from the stage-1 model of seed 0 (or
# SEED) with paper_experiments.sh's recipe, data and evaluation; then the twin tests and the
# twins' separation against the bandwidth. The plain stage-2 runs (coords_true, coords_false, as
# coord_scale_experiment.sh trains them) are the comparison: name them after OUT to include them.
# On the 2-core Xeon: stage 1 22 min, each stage-2 run 10 min, evaluation and twin tests 3 min.
# Resumable.
# Usage: [SEED=1] bash docs/scripts/pull_weight_experiment.sh [OUT] [BASELINE_RUN...]
set -euo pipefail
source "$(dirname "$0")/seed0_lever.sh"
shift || true  # OUT, which seed0_lever.sh read; the rest name baseline runs

train $OUT/alpha3_coords_true $OUT/data "${STAGE1[@]}" --set loss.alpha=3.0
train $OUT/alpha3_coords_false $OUT/data "${STAGE1[@]}" --set loss.alpha=3.0 \
  --set stage2_coords=false
plain "$@"
RUNS=(alpha3_coords_true alpha3_coords_false "$@")
evaluate "${RUNS[@]}"
twin_tests alpha3_ "${RUNS[@]}"
separation "${RUNS[@]}"
echo ALL_DONE
