#!/usr/bin/env bash
# Issue 14, eleventh session (docs/RESULTS.md, "Thin parts of things had no instance"): the
# stage-2 models of paper_experiments.sh / output_coords_experiment.sh in OUT (one seed's
# directory) evaluated again with the Predictor's instance reach R (default 2; 0: the rule
# before), with each bandwidth file a search left there (bandwidthsSUFFIX.json for SUFFIX in
# SUFFIXES, default "_wide"): PQ/AP with predicted semantics (for "_wide" only) and AP_GT into
# RUN/eval[_gt]_reachR SUFFIX.json, and the three twin tests of the runs in TWIN_RUNS into
# OUT/reachR_<variant>SUFFIX.json. Each evaluation ~1 min on 2 cores. Resumable.
# Usage: [R=2] [SUFFIXES="_wide _gtsearch300"] bash docs/scripts/reach_experiment.sh OUT [RUN...]
set -euo pipefail
OUT=$1; shift
RUNS=("${@:-coord_output8 coords_true coords_false}")
RUNS=(${RUNS[*]})
R=${R:-2}
TWIN_RUNS=(${TWIN_RUNS:-coord_output8 coords_true coords_false})
for sfx in ${SUFFIXES:-_wide}; do
  for run in "${RUNS[@]}"; do
    d=$OUT/$run; bw=$d/bandwidths$sfx.json
    [[ -f $d/checkpoints/final.pt && -f $bw ]] || { echo "skip $run$sfx: no checkpoint or $bw"; continue; }
    for sem in pred gt; do
      [[ $sem == pred && $sfx != _wide ]] && continue
      o=$d/eval$([[ $sem == gt ]] && echo _gt || true)_reach$R$sfx.json
      [[ -f $o ]] || python - "$d/checkpoints/final.pt" "$bw" "$OUT/data" "$sem" "$o" "$R" <<'PY'
import sys

from panonet._atomic import write_json_atomic
from panonet.data.cityscapes import CityscapesPanoptic
from panonet.evaluation.run import evaluate_model
from panonet.inference.predictor import Predictor

ckpt, bw, data, sem, out, reach = sys.argv[1:]
p = Predictor(ckpt, bandwidths=bw, min_instance_size=32, instance_reach=int(reach))
r = evaluate_model(p, CityscapesPanoptic(data, "val"), semantic_source=sem, progress=False)
write_json_atomic(out, {**r, "instance_reach": int(reach)})
print(f"{out}: AP {100 * r['instance']['AP']:.1f}")
PY
    done
  done
  for variant in mirror shift scene; do
    o=$OUT/reach${R}_$variant$sfx.json
    [[ -f $o ]] || python - "$o" "$variant" "$OUT/data" "$R" "$sfx" "${TWIN_RUNS[@]/#/$OUT/}" <<'PY'
import sys

from panonet._atomic import write_json_atomic
from panonet.data.cityscapes import CityscapesPanoptic
from panonet.evaluation.mirror import run_mirror_test
from panonet.inference.predictor import Predictor

out, variant, data, reach, sfx, *runs = sys.argv[1:]
ds = CityscapesPanoptic(data, "val")
res = {}
for run in runs:  # as `panonet mirror-test` runs them (no minimum instance size)
    p = Predictor(f"{run}/checkpoints/final.pt", bandwidths=f"{run}/bandwidths{sfx}.json",
                  instance_reach=int(reach))
    res[run] = run_mirror_test(p, ds, variant=variant, progress=False)
    print(f"{variant} {run}: {res[run]['merged']} merged / {res[run]['merged'] + res[run]['separated']}")
write_json_atomic(out, res)
PY
  done
done
echo ALL_DONE
