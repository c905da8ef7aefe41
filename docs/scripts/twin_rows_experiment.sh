#!/usr/bin/env bash
# Issue 14 lever (docs/RESULTS.md): stage 2 trained on scenes with more twins — 1 to 4 groups
# per image, each a row of 2 to 4 identical copies (panonet synth --twin-row 4 --twin-groups 4)
# — with and without coordinates, from the same stage-1 model as stage 2 on the usual scenes;
# all four evaluated on the usual val set (paper_experiments.sh's recipe, data and evaluation),
# seed 0. Runs that coord_scale_experiment.sh already made in OUT are reused. ~60 min on a
# 2-core CPU from scratch (~25 with the stage-1 and plain stage-2 runs in place). Resumable.
# Usage: bash docs/scripts/twin_rows_experiment.sh [OUT]   (OUT defaults to runs/coord_scale)
set -euo pipefail

OUT=${1:-runs/coord_scale}
CONFIG=configs/panonet_synthetic.toml
NOPROG=(--set progress=false)
[[ -d $OUT/data/leftImg8bit ]] || panonet synth --out "$OUT/data" --train 300 --val 50 --size 256x512 --no-progress
[[ -d $OUT/rows_data/leftImg8bit ]] || panonet synth --out "$OUT/rows_data" --train 300 --size 256x512 --twin-row 4 --twin-groups 4 --no-progress
# rows_data has no val split: its runs skip the end-of-stage validation (val_images=0), which
# changes no weights.
train() { local run=$1 data=$2; shift 2; [[ -f "$run/checkpoints/final.pt" ]] && return 0
  panonet train --config "$CONFIG" --out "$run" --resume auto --set "data_root=\"$data\"" "${NOPROG[@]}" "$@"; }
STAGE1=(--set seed=0 --set stage1_steps=0 --set "init_weights=\"$OUT/stage1/checkpoints/final.pt\"")
train $OUT/stage1 $OUT/data --set seed=0 --set stage2_steps=0
train $OUT/coords_true $OUT/data "${STAGE1[@]}"
train $OUT/coords_false $OUT/data "${STAGE1[@]}" --set stage2_coords=false
train $OUT/rows_coords_true $OUT/rows_data "${STAGE1[@]}" --set val_images=0
train $OUT/rows_coords_false $OUT/rows_data "${STAGE1[@]}" --set stage2_coords=false --set val_images=0
RUNS=(coords_true coords_false rows_coords_true rows_coords_false)
for run in "${RUNS[@]}"; do
  ckpt=$OUT/$run/checkpoints/final.pt
  [[ -f $OUT/$run/bandwidths.json ]] || panonet search-bandwidth --checkpoint $ckpt --data $OUT/data --images 20 --out $OUT/$run/bandwidths.json --no-progress
  [[ -f $OUT/$run/eval.json ]] || panonet eval --checkpoint $ckpt --data $OUT/data --bandwidths $OUT/$run/bandwidths.json --min-instance-size 32 --out $OUT/$run/eval.json --no-progress
  [[ -f $OUT/$run/eval_gt.json ]] || panonet eval --checkpoint $ckpt --data $OUT/data --bandwidths $OUT/$run/bandwidths.json --min-instance-size 32 --semantic gt --out $OUT/$run/eval_gt.json --no-progress
done
for variant in mirror shift scene; do
  [[ -f $OUT/rows_$variant.json ]] || panonet mirror-test --data $OUT/data --variant $variant \
    --checkpoint $(for r in "${RUNS[@]}"; do echo $OUT/$r/checkpoints/final.pt; done) --bandwidths $(for r in "${RUNS[@]}"; do echo $OUT/$r/bandwidths.json; done) \
    --out $OUT/rows_$variant.json --no-progress
done
echo ALL_DONE
