#!/usr/bin/env bash
# Issue 14 lever (docs/RESULTS.md): stage 2 with L_dist averaged over the pairs of instances
# closer than 2 delta_d only (loss.dist_norm = "active") instead of over all pairs, with and
# without coordinates, from the stage-1 model of coord_scale_experiment.sh (same recipe, data,
# evaluation, seed 0); then the twin tests and the twins' separation against the bandwidth
# beside the plain stage-2 models. ~25 min on a 2-core CPU with OUT's stage-1 and plain stage-2
# runs in place (~55 without). Resumable.
# Usage: bash docs/scripts/hard_pairs_experiment.sh [OUT]   (OUT defaults to runs/coord_scale)
set -euo pipefail

OUT=${1:-runs/coord_scale}
CONFIG=configs/panonet_synthetic.toml
COMMON=(--set "data_root=\"$OUT/data\"" --set progress=false)
[[ -d $OUT/data/leftImg8bit ]] || panonet synth --out "$OUT/data" --train 300 --val 50 --size 256x512 --no-progress
train() { local run=$1; shift; [[ -f "$run/checkpoints/final.pt" ]] && return 0
  panonet train --config "$CONFIG" --out "$run" --resume auto "${COMMON[@]}" "$@"; }
STAGE1=(--set seed=0 --set stage1_steps=0 --set "init_weights=\"$OUT/stage1/checkpoints/final.pt\"")
train $OUT/stage1 --set seed=0 --set stage2_steps=0
train $OUT/coords_true "${STAGE1[@]}"
train $OUT/coords_false "${STAGE1[@]}" --set stage2_coords=false
train $OUT/active_coords_true "${STAGE1[@]}" --set 'loss.dist_norm="active"'
train $OUT/active_coords_false "${STAGE1[@]}" --set 'loss.dist_norm="active"' --set stage2_coords=false
RUNS=(coords_true coords_false active_coords_true active_coords_false)
for run in "${RUNS[@]}"; do
  ckpt=$OUT/$run/checkpoints/final.pt
  [[ -f $OUT/$run/bandwidths.json ]] || panonet search-bandwidth --checkpoint $ckpt --data $OUT/data --images 20 --out $OUT/$run/bandwidths.json --no-progress
  [[ -f $OUT/$run/eval.json ]] || panonet eval --checkpoint $ckpt --data $OUT/data --bandwidths $OUT/$run/bandwidths.json --min-instance-size 32 --out $OUT/$run/eval.json --no-progress
  [[ -f $OUT/$run/eval_gt.json ]] || panonet eval --checkpoint $ckpt --data $OUT/data --bandwidths $OUT/$run/bandwidths.json --min-instance-size 32 --semantic gt --out $OUT/$run/eval_gt.json --no-progress
done
for variant in mirror shift scene; do
  [[ -f $OUT/active_$variant.json ]] || panonet mirror-test --data $OUT/data --variant $variant \
    --checkpoint $(for r in "${RUNS[@]}"; do echo $OUT/$r/checkpoints/final.pt; done) \
    --bandwidths $(for r in "${RUNS[@]}"; do echo $OUT/$r/bandwidths.json; done) \
    --out $OUT/active_$variant.json --no-progress
done
for run in "${RUNS[@]}"; do
  [[ -f $OUT/$run/separation.txt ]] || python docs/scripts/twin_separation.py $OUT/data \
    $OUT/$run/bandwidths.json $OUT/$run/checkpoints/final.pt > $OUT/$run/separation.txt
done
echo ALL_DONE
