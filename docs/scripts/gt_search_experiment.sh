#!/usr/bin/env bash
# Issue 14 (docs/RESULTS.md, "Bandwidths searched on the ground-truth semantic map"): AP_GT
# (Table III) and the twin tests cluster on the ground-truth semantic map, but their bandwidths
# were searched on the predicted one, whose PQ for small classes (rider, bicycle) is near 0 at
# every candidate, so their choice was noise. This searches each run's bandwidths on the
# ground-truth map instead (`panonet search-bandwidth --semantic gt`; 20 train images as before,
# or SEARCH_IMAGES), then AP_GT, the three twin tests and the twins' separation with them, for
# the stage-2 runs of output_coords_experiment.sh in OUT (seed SEED's). No training; 1-2 min per
# run on 2 cores.
# Usage: [SEED=1] bash docs/scripts/gt_search_experiment.sh OUT RUN...
#   e.g. bash docs/scripts/gt_search_experiment.sh /tmp/alpha coord_output8 coords_true coords_false
set -euo pipefail
export SEARCH_SEMANTIC=gt SUFFIX=${SUFFIX:-_gtsearch}
source "$(dirname "$0")/seed0_lever.sh"
shift
evaluate "$@"
twin_tests runs_ "$@"
separation "$@"
echo ALL_DONE
