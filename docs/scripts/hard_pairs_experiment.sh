#!/usr/bin/env bash
# Issue 14 lever (docs/RESULTS.md): stage 2 with L_dist averaged over the pairs of instances
# closer than 2 delta_d only (loss.dist_norm = "active") instead of over all pairs, with and
# without coordinates, from the stage-1 model of coord_scale_experiment.sh (same recipe, data,
# evaluation, seed 0); then the twin tests and the twins' separation against the bandwidth
# beside the plain stage-2 models. ~25 min on a 2-core CPU with OUT's stage-1 and plain stage-2
# runs in place (~55 without). Resumable.
# Usage: bash docs/scripts/hard_pairs_experiment.sh [OUT]   (OUT defaults to runs/coord_scale)
set -euo pipefail
source "$(dirname "$0")/seed0_lever.sh"

plain coords_true coords_false
train $OUT/active_coords_true $OUT/data "${STAGE1[@]}" --set 'loss.dist_norm="active"'
train $OUT/active_coords_false $OUT/data "${STAGE1[@]}" --set 'loss.dist_norm="active"' --set stage2_coords=false
RUNS=(coords_true coords_false active_coords_true active_coords_false)
evaluate "${RUNS[@]}"
twin_tests active_ "${RUNS[@]}"
separation "${RUNS[@]}"
echo ALL_DONE
