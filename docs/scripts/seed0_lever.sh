# Shared by the seed-0 lever experiments of issue 14 (coord_scale_experiment.sh,
# twin_rows_experiment.sh, hard_pairs_experiment.sh): paper_experiments.sh's recipe, data and
# evaluation for seed 0 (or SEED) in OUT, each step skipped when its output exists. Sourced,
# not run.
OUT=${1:-runs/coord_scale}
SEED=${SEED:-0}
CONFIG=configs/panonet_synthetic.toml
[[ -d $OUT/data/leftImg8bit ]] || panonet synth --out "$OUT/data" --train 300 --val 50 --size 256x512 --no-progress

# train RUN DATA OVERRIDES...: a training run on dataset DATA, unless it has finished; with the
# step counts of paper_experiments.sh (the documented tables), which the overrides may replace.
train() { local run=$1 data=$2; shift 2; [[ -f "$run/checkpoints/final.pt" ]] && return 0
  panonet train --config "$CONFIG" --out "$run" --resume auto --set "data_root=\"$data\"" \
    --set progress=false --set stage1_steps=${STAGE1_STEPS:-6200} \
    --set stage2_steps=${STAGE2_STEPS:-2600} "$@"; }
# Stage 2 from the seed's stage 1 (the stage-1 run itself trained first).
STAGE1=(--set seed=$SEED --set stage1_steps=0 --set "init_weights=\"$OUT/stage1/checkpoints/final.pt\"")
train $OUT/stage1 $OUT/data --set seed=$SEED --set stage2_steps=0

# plain RUN...: the plain stage-2 runs every lever is compared with, by name: coords_true
# (with the coordinate input), coords_false (without).
plain() { local run; for run in "$@"; do case $run in
  coords_true) train $OUT/coords_true $OUT/data "${STAGE1[@]}" ;;
  coords_false) train $OUT/coords_false $OUT/data "${STAGE1[@]}" --set stage2_coords=false ;;
  *) echo "plain: unknown run $run (expected coords_true or coords_false)" >&2; exit 2 ;;
esac; done; }

# CANDIDATES (optional): the bandwidths the search tries instead of its default; SUFFIX
# (optional) goes into the names of the bandwidth, evaluation, twin-test and separation files, so
# that searches over other candidates sit beside the default's.
SUFFIX=${SUFFIX:-}
SEARCH_ARGS=(); [[ -n ${CANDIDATES:-} ]] && SEARCH_ARGS=(--candidates $CANDIDATES)
# SEARCH_IMAGES (optional): the train images the search uses (default 20). SEARCH_SEMANTIC=gt
# (optional): search the bandwidths on the ground-truth semantic map, the map that AP_GT and the
# twin tests cluster on; evaluate then skips the predicted-map PQ/AP, which wants bandwidths
# searched on the predicted map.
SEARCH_ARGS+=(--semantic "${SEARCH_SEMANTIC:-pred}")

# evaluate RUN...: bandwidths on 20 train images, PQ/AP and AP_GT on the val set, per run.
evaluate() { local run ckpt bw; for run in "$@"; do ckpt=$OUT/$run/checkpoints/final.pt; bw=$OUT/$run/bandwidths$SUFFIX.json
  [[ -f $bw ]] || panonet search-bandwidth --checkpoint $ckpt --data $OUT/data --images ${SEARCH_IMAGES:-20} --out $bw --no-progress "${SEARCH_ARGS[@]}"
  [[ ${SEARCH_SEMANTIC:-pred} == gt || -f $OUT/$run/eval$SUFFIX.json ]] || panonet eval --checkpoint $ckpt --data $OUT/data --bandwidths $bw --min-instance-size 32 --out $OUT/$run/eval$SUFFIX.json --no-progress
  [[ -f $OUT/$run/eval_gt$SUFFIX.json ]] || panonet eval --checkpoint $ckpt --data $OUT/data --bandwidths $bw --min-instance-size 32 --semantic gt --out $OUT/$run/eval_gt$SUFFIX.json --no-progress
done; }

# twin_tests PREFIX RUN...: the three twin tests of the runs together, in
# OUT/PREFIX<variant>SUFFIX.json.
twin_tests() { local prefix=$1 variant r; shift; for variant in mirror shift scene; do
  [[ -f $OUT/$prefix$variant$SUFFIX.json ]] || panonet mirror-test --data $OUT/data --variant $variant \
    --checkpoint $(for r in "$@"; do echo $OUT/$r/checkpoints/final.pt; done) \
    --bandwidths $(for r in "$@"; do echo $OUT/$r/bandwidths$SUFFIX.json; done) \
    --out $OUT/$prefix$variant$SUFFIX.json --no-progress
done; }

# separation RUN...: how far apart the twins are against the bandwidth, per run, in
# OUT/RUN/separationSUFFIX.txt (docs/scripts/twin_separation.py).
separation() { local run; for run in "$@"; do
  [[ -f $OUT/$run/separation$SUFFIX.txt ]] || python docs/scripts/twin_separation.py $OUT/data \
    $OUT/$run/bandwidths$SUFFIX.json $OUT/$run/checkpoints/final.pt > $OUT/$run/separation$SUFFIX.txt
done; }
