#!/usr/bin/env bash
# Issue 14 lever (docs/RESULTS.md): stage 2 with the coordinate input scaled by 10
# (coord_scale), beside stage 2 with and without coordinates at scale 1, seed 0, with
# paper_experiments.sh's recipe, data and evaluation; ~55 min on a 2-core CPU. Resumable.
# Usage: bash docs/scripts/coord_scale_experiment.sh [OUT]   (OUT defaults to runs/coord_scale)
set -euo pipefail
source "$(dirname "$0")/seed0_lever.sh"

train $OUT/scale10 $OUT/data "${STAGE1[@]}" --set coord_scale=10.0
plain coords_true coords_false
evaluate scale10 coords_true coords_false
twin_tests "" scale10 coords_true coords_false
echo ALL_DONE
