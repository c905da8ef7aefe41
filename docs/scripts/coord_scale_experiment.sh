#!/usr/bin/env bash
# Issue 14 lever (docs/RESULTS.md): stage 2 with the coordinate input scaled by 10
# (coord_scale), beside stage 2 with and without coordinates at scale 1, seed 0, with
# paper_experiments.sh's recipe, data and evaluation; ~55 min on a 2-core CPU. Resumable.
# Usage: bash docs/scripts/coord_scale_experiment.sh [OUT]   (OUT defaults to runs/coord_scale)
set -euo pipefail

OUT=${1:-runs/coord_scale}
CONFIG=configs/panonet_synthetic.toml
COMMON=(--set "data_root=\"$OUT/data\"" --set progress=false)
[[ -d $OUT/data/leftImg8bit ]] || panonet synth --out "$OUT/data" --train 300 --val 50 --size 256x512 --no-progress
train() { local run=$1; shift; [[ -f "$run/checkpoints/final.pt" ]] && return 0
  panonet train --config "$CONFIG" --out "$run" --resume auto "${COMMON[@]}" "$@"; }
train $OUT/stage1 --set seed=0 --set stage2_steps=0
train $OUT/scale10 --set seed=0 --set stage1_steps=0 --set coord_scale=10.0 \
  --set "init_weights=\"$OUT/stage1/checkpoints/final.pt\""
train $OUT/coords_true --set seed=0 --set stage1_steps=0 \
  --set "init_weights=\"$OUT/stage1/checkpoints/final.pt\""
train $OUT/coords_false --set seed=0 --set stage1_steps=0 --set stage2_coords=false \
  --set "init_weights=\"$OUT/stage1/checkpoints/final.pt\""
for run in scale10 coords_true coords_false; do
  ckpt=$OUT/$run/checkpoints/final.pt
  [[ -f $OUT/$run/bandwidths.json ]] || panonet search-bandwidth --checkpoint $ckpt --data $OUT/data --images 20 --out $OUT/$run/bandwidths.json --no-progress
  [[ -f $OUT/$run/eval.json ]] || panonet eval --checkpoint $ckpt --data $OUT/data --bandwidths $OUT/$run/bandwidths.json --min-instance-size 32 --out $OUT/$run/eval.json --no-progress
  [[ -f $OUT/$run/eval_gt.json ]] || panonet eval --checkpoint $ckpt --data $OUT/data --bandwidths $OUT/$run/bandwidths.json --min-instance-size 32 --semantic gt --out $OUT/$run/eval_gt.json --no-progress
done
for variant in mirror shift scene; do
  [[ -f $OUT/$variant.json ]] || panonet mirror-test --data $OUT/data --variant $variant \
    --checkpoint $OUT/scale10/checkpoints/final.pt $OUT/coords_true/checkpoints/final.pt $OUT/coords_false/checkpoints/final.pt \
    --bandwidths $OUT/scale10/bandwidths.json $OUT/coords_true/bandwidths.json $OUT/coords_false/bandwidths.json \
    --out $OUT/$variant.json --no-progress
done
echo ALL_DONE
