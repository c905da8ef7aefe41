#!/usr/bin/env bash
# Issue 14 lever (docs/RESULTS.md): stage 2 trained on scenes with more twins — 1 to 4 groups
# per image, each a row of 2 to 4 identical copies (panonet synth --twin-row 4 --twin-groups 4)
# — with and without coordinates, from the same stage-1 model as stage 2 on the usual scenes;
# all four evaluated on the usual val set (paper_experiments.sh's recipe, data and evaluation),
# seed 0. Runs that coord_scale_experiment.sh already made in OUT are reused. ~60 min on a
# 2-core CPU from scratch (~25 with the stage-1 and plain stage-2 runs in place). Resumable.
# Usage: bash docs/scripts/twin_rows_experiment.sh [OUT]   (OUT defaults to runs/coord_scale)
set -euo pipefail
source "$(dirname "$0")/seed0_lever.sh"

[[ -d $OUT/rows_data/leftImg8bit ]] || panonet synth --out "$OUT/rows_data" --train 300 --size 256x512 --twin-row 4 --twin-groups 4 --no-progress
plain coords_true coords_false
# rows_data has no val split: its runs skip the end-of-stage validation (val_images=0), which
# changes no weights.
train $OUT/rows_coords_true $OUT/rows_data "${STAGE1[@]}" --set val_images=0
train $OUT/rows_coords_false $OUT/rows_data "${STAGE1[@]}" --set stage2_coords=false --set val_images=0
RUNS=(coords_true coords_false rows_coords_true rows_coords_false)
evaluate "${RUNS[@]}"
twin_tests rows_ "${RUNS[@]}"
echo ALL_DONE
