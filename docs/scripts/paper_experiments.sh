#!/usr/bin/env bash
# The paper's experiments on synthetic street scenes, as reported in docs/RESULTS.md:
#   Table III  PanoNet with vs without position-sensitive embedding (PQ, AP, AP_GT),
#   Fig. 5     the mirrored-twin test with and without coordinates,
#   IV-e       the shared-weights variant.
# Usage: bash docs/scripts/paper_experiments.sh [OUT]   (OUT defaults to runs/paper)
# About 75 minutes on a 2-core CPU; every step writes its outputs under OUT and can be rerun.
set -euo pipefail
OUT=${1:-runs/paper}
CONFIG=configs/panonet_synthetic.toml
COMMON=(
  --set "data_root=\"$OUT/data\"" --set 'crop_size=[128, 256]' --set batch_size=4
  --set 'scale=[0.75, 1.5]' --set val_every=300 --set val_images=20 --set checkpoint_every=300
  --set workers=1 --set progress=false --set freeze_bn_stage2=true
)

panonet synth --out "$OUT/data" --train 400 --val 50 --size 256x512

# Stage 1 (no coordinates), shared by both Table III variants: 1200 steps.
panonet train --config "$CONFIG" --out "$OUT/stage1" "${COMMON[@]}" \
  --set stage1_steps=1200 --set stage2_steps=0

# Stage 2 from the same stage-1 weights, 600 steps, with and without the coordinate input.
for coords in true false; do
  run="$OUT/stage2_coords_$coords"
  panonet train --config "$CONFIG" --out "$run" "${COMMON[@]}" \
    --set stage1_steps=0 --set stage2_steps=600 --set stage2_coords=$coords \
    --set "init_weights=\"$OUT/stage1/checkpoints/final.pt\""
done

# The shared-weights variant (paper IV-e): one trunk for both heads, same schedule.
panonet train --config "$CONFIG" --out "$OUT/shared" "${COMMON[@]}" \
  --set stage1_steps=1200 --set stage2_steps=600 --set share_weights=true

# Per-class bandwidths on 20 train images, then PQ/AP (predicted semantics) and AP_GT.
for run in "$OUT/stage2_coords_true" "$OUT/stage2_coords_false" "$OUT/shared"; do
  ckpt="$run/checkpoints/final.pt"
  panonet search-bandwidth --checkpoint "$ckpt" --data "$OUT/data" --images 20 \
    --out "$run/bandwidths.json" --no-progress
  panonet eval --checkpoint "$ckpt" --data "$OUT/data" --bandwidths "$run/bandwidths.json" \
    --out "$run/eval.json" --save-vis "$run/vis" --num-vis 4 --no-progress
  panonet eval --checkpoint "$ckpt" --data "$OUT/data" --bandwidths "$run/bandwidths.json" \
    --semantic gt --out "$run/eval_gt.json" --no-progress
done

# Fig. 5: mirrored twins, clustered on the ground-truth semantic map.
panonet mirror-test --data "$OUT/data" \
  --checkpoint "$OUT/stage2_coords_true/checkpoints/final.pt" \
  "$OUT/stage2_coords_false/checkpoints/final.pt" \
  --bandwidths "$OUT/stage2_coords_true/bandwidths.json" \
  "$OUT/stage2_coords_false/bandwidths.json" \
  --out "$OUT/mirror.json" --save-vis "$OUT/mirror" --num-vis 4 --no-progress
