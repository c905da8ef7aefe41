#!/usr/bin/env bash
# `make gpu-check`: on a machine with an NVIDIA GPU, a CUDA build of torch in python3 and no
# network, in one command and under one time budget:
#   setup        the GPU, torch and nvcc are found (else exit 2 at once, nothing is run), and the
#                wheels in .whl/ (`make gpu-wheels` on a networked machine) are installed into
#                /tmp/panonet-site, put first on PYTHONPATH
#   build        panonet built with its CUDA kernels against that torch and installed (not
#   import       editable); then the installed build must be the panonet imported
#   tests        the CUDA tests of tests/ (pytest -k cuda, PANONET_EXPECT_CUDA=1)
#   bench-loss   benchmarks/bench_discriminative_loss.py --device cuda (targets met / not met)
#   bench-upsample  benchmarks/bench_upsample_argmax.py --device cuda (the fused semantic map)
#   bench-guided  benchmarks/bench_guided_upsample_argmax.py --device cuda (the guided map)
#   bench-instances  benchmarks/bench_upsample_instances.py --device cuda (the instance map)
#   bench-panoptic  benchmarks/bench_panoptic_ids.py --device cuda (the panoptic ids)
#   bench-mean-shift  benchmarks/bench_mean_shift.py --device cuda
#   profile      benchmarks/profile_kernels.py --device cuda (the ops' kernels, torch.profiler)
# and with --pipeline (issue 13: every GPU number of the README in one command; budget 9 min):
#   bench-model  benchmarks/bench_model.py --device cuda (stages, end to end, CUDA graph, syncs)
#   bench-train  benchmarks/bench_train.py --device cuda (training steps, fp32 and bf16)
#   demo         panonet demo --device cuda (trains, searches bandwidths, evaluates)
#   bench-trained  panonet bench --device cuda --half with the demo's checkpoint and bandwidths
#   bench-loader  benchmarks/bench_train.py --loader-only (what the host's loader feeds; last, in
#                what the budget leaves)
# Each step has a timeout; a failed step is reported and the next runs where it can (the benches
# run after failed tests, nothing runs after a failed build). Logs go to build/gpu-check/, the
# benchmarks' JSON to benchmarks/results/; with $OUT set, the summary and an archive of both go
# there.
#
#   scripts/gpu_check.sh [--dry-run] [--pipeline]   (--dry-run: print the steps, run none)
#
# Environment: PYTHON (python3), TORCH_CUDA_ARCH_LIST (default: the GPU's compute capability),
# GPU_CHECK_BUDGET (seconds for everything, 360; 570 with --pipeline), GPU_CHECK_LOGS (build/gpu-check),
# GPU_CHECK_SITE (/tmp/panonet-site), GPU_CHECK_SKIP (step names not to run, e.g. "demo
# bench-mean-shift": a short rerun within a lease), MEAN_SHIFT_ARGS (--sklearn-runs 1: one sklearn fit per
# case, not 3; sklearn's CPU times are not what this run measures).
# Exit status: 0 every step passed, 1 a step failed or timed out, 2 no CUDA GPU (nothing run).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-360}
LOGS=${GPU_CHECK_LOGS:-$REPO/build/gpu-check}
SITE=${GPU_CHECK_SITE:-/tmp/panonet-site}
MEAN_SHIFT_ARGS=${MEAN_SHIFT_ARGS---sklearn-runs 1}
SKIP_STEPS=${GPU_CHECK_SKIP:-}
DATE=$(date -u +%F)
LOSS_JSON=benchmarks/results/discriminative_loss-cuda-$DATE.json
UPSAMPLE_JSON=benchmarks/results/upsample_argmax-cuda-$DATE.json
UPSAMPLE_INSTANCES_JSON=benchmarks/results/upsample_instances-cuda-$DATE.json
GUIDED_JSON=benchmarks/results/guided_upsample_argmax-cuda-$DATE.json
PANOPTIC_JSON=benchmarks/results/panoptic_ids-cuda-$DATE.json
MEAN_SHIFT_JSON=benchmarks/results/mean_shift-cuda-$DATE.json
MODEL_JSON=benchmarks/results/model-cuda-$DATE.json
TRAINED_JSON=benchmarks/results/predictor-trained-cuda-$DATE.json
TRAIN_JSON=benchmarks/results/train-cuda-$DATE.json
LOADER_JSON=benchmarks/results/train-loader-cuda-$DATE.json
PROFILE_JSON=benchmarks/results/profile_kernels-cuda-$DATE.json
DRY_RUN=0
PIPELINE=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --pipeline) PIPELINE=1 ;;
    *) echo "usage: $0 [--dry-run] [--pipeline]" >&2; exit 2 ;;
  esac
done
((PIPELINE)) && BUDGET=${GPU_CHECK_BUDGET:-570}

export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
  PIP_NO_INPUT=1 HYPOTHESIS_PROFILE=ci
START=$(date +%s.%N)
FAILED=0
SUMMARY=()

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
left() {
  awk -v s="$START" -v n="$(date +%s.%N)" -v b="$BUDGET" 'BEGIN { printf "%d", b - (n - s) }'
}
record() { SUMMARY+=("| $1 | $2 | $3 |"); }

# step NAME LOG LIMIT CMD...: runs CMD with its output appended to LOG, for at most LIMIT seconds
# (less if the budget has less left); records ok / FAILED / TIMEOUT and its seconds.
step() {
  local name=$1 log=$LOGS/$2 limit=$3
  shift 3
  if [[ " $SKIP_STEPS " == *" $name "* ]]; then
    echo "== $name: skipped (GPU_CHECK_SKIP)"
    record "$name" "skipped (GPU_CHECK_SKIP)" 0
    return 3
  fi
  local budget_left
  budget_left=$(left)
  if ((budget_left < 10)); then
    echo "== $name: skipped, the ${BUDGET}s budget is spent"
    record "$name" "skipped (budget spent)" 0
    FAILED=1
    return 1
  fi
  ((limit > budget_left)) && limit=$budget_left
  local shown=${*//$'\n'/; }
  ((${#shown} > 200)) && shown="${shown:0:200} ..."
  echo "== $name (limit ${limit}s, log ${log#"$REPO"/}): $shown"
  if ((DRY_RUN)); then
    record "$name" "dry run" 0
    return 0
  fi
  local t0 rc status
  t0=$(date +%s.%N)
  echo "\$ $*" >>"$log"
  timeout -k 10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="TIMEOUT (${limit}s)" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  record "$name" "$status" "$(elapsed "$t0")"
  echo "   $status in $(elapsed "$t0") s"
  if ((rc != 0)); then
    FAILED=1
    echo "   last lines of ${log#"$REPO"/}:"
    tail -n 30 "$log" | sed 's/^/   | /'
  fi
  return "$rc"
}

skip() {
  echo "== $1: skipped ($2)"
  record "$1" "skipped ($2)" 0
  FAILED=1
}

mkdir -p "$LOGS" benchmarks/results || exit 2
rm -f "$LOGS"/*.log "$LOGS"/summary.txt
touch "$LOGS/.start"  # JSON older than this is not this run's
SETUP_LOG=$LOGS/1-setup.log

# --- setup: is there a CUDA GPU for this torch? Decided before anything is run. -------------
t0=$(date +%s.%N)
{
  echo "\$ date; uname -a; nvidia-smi; nvcc --version"
  date -u
  uname -a
  command -v nvidia-smi >/dev/null && timeout 30 nvidia-smi
} >>"$SETUP_LOG" 2>&1
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
fi
command -v nvcc >/dev/null && nvcc --version >>"$SETUP_LOG" 2>&1

no_gpu() {
  echo "gpu-check: no CUDA GPU: $1" | tee -a "$SETUP_LOG" >&2
  if ((DRY_RUN)); then
    ARCH=${TORCH_CUDA_ARCH_LIST:-9.0}
    echo "gpu-check: --dry-run: listing the steps anyway (TORCH_CUDA_ARCH_LIST $ARCH)"
    return 0
  fi
  echo "gpu-check: nothing was run (log: ${SETUP_LOG#"$REPO"/})" >&2
  exit 2
}

if ! command -v "$PY" >/dev/null; then
  no_gpu "$PY not found"
else
  # Prints: torch version, its CUDA version, GPU name, and the compute capabilities (9.0;...).
  PROBE='import torch
if torch.version.cuda is None:
    raise SystemExit(f"torch {torch.__version__} is a CPU build")
if not torch.cuda.is_available():
    raise SystemExit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")
n = torch.cuda.device_count()
caps = sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(n)})
name = torch.cuda.get_device_name(0).replace(" ", "_")
print(torch.__version__, torch.version.cuda, name, ";".join(caps))'
  probe=$(timeout 60 "$PY" -c "$PROBE" 2>"$LOGS/probe.err")
  probe_rc=$?
  cat "$LOGS/probe.err" >>"$SETUP_LOG"
  if ((probe_rc == 0)); then
    read -r TORCH_VERSION TORCH_CUDA GPU_NAME GPU_CAPS <<<"$probe"
    GPU_NAME=${GPU_NAME//_/ }
    ARCH=${TORCH_CUDA_ARCH_LIST:-$GPU_CAPS}
    echo "gpu-check: $GPU_NAME (compute $GPU_CAPS), torch $TORCH_VERSION (CUDA $TORCH_CUDA)," \
      "nvcc $(command -v nvcc || echo 'not found'), TORCH_CUDA_ARCH_LIST=$ARCH" |
      tee -a "$SETUP_LOG"
  else
    reason=$(grep -v '^\s*$' "$LOGS/probe.err" | tail -n 1)
    no_gpu "${reason:-$PY -c 'import torch' failed (exit $probe_rc)}"
  fi
fi
record "gpu found" "$([[ -n ${GPU_NAME:-} ]] && echo ok || echo 'no (dry run)')" "$(elapsed "$t0")"

# --- the steps ------------------------------------------------------------------------------
if compgen -G ".whl/*.whl" >/dev/null; then
  step wheels 1-setup.log 60 "$PY" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
else
  echo "== wheels: none in .whl/ (make gpu-wheels on a networked machine); not installed"
  record wheels "skipped (no .whl/)" 0
fi

# The C++ compiler. Built with /opt/gcc/bin/g++ on the H200 image, the extension segfaulted
# inside its own copy of std::ostream's number formatting whenever an error message held a size
# (backtrace, 2026-11-30): a second libstdc++ beside the one torch loads, as a compiler with no
# shared libstdc++ links in. Where the g++ on PATH has none and /usr/bin/g++ has one, the build
# uses the latter; the compilers are logged, and the import step checks an error message.
cxx_shared_libstdcxx() { [[ $("$1" -print-file-name=libstdc++.so 2>/dev/null) == /* ]]; }
if [[ -z ${CXX:-} ]] && command -v g++ >/dev/null; then
  GXX=$(command -v g++)
  {
    echo "g++ on PATH: $GXX ($("$GXX" -dumpfullversion 2>/dev/null)), shared libstdc++:" \
      "$("$GXX" -print-file-name=libstdc++.so), static: $("$GXX" -print-file-name=libstdc++.a)"
  } >>"$SETUP_LOG" 2>&1
  if ! cxx_shared_libstdcxx "$GXX" && [[ -x /usr/bin/g++ ]] && cxx_shared_libstdcxx /usr/bin/g++; then
    export CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
    echo "gpu-check: $GXX has no shared libstdc++; building with CXX=$CXX" | tee -a "$SETUP_LOG"
  fi
fi

# The installed package, not the source tree's python/panonet (which has no built _C), must be
# the one imported, from the repository root as pytest and the benchmarks run.
IMPORT_CHECK='import sys, panonet, panonet.ops as ops
path = panonet.__file__
print("panonet", path, "CUDA kernels:", ops.built_with_cuda(), "archs:", ops.cuda_arch_list())
if path.startswith(sys.argv[1] + "/python/"):
    raise SystemExit("imported the source tree, not the installed package")
if not ops.built_with_cuda():
    raise SystemExit("panonet._C was built without CUDA kernels")
with open("/proc/self/maps") as maps:
    print("libstdc++ loaded:", sorted({l.split()[-1] for l in maps if "libstdc++" in l}))
# An error message with numbers in it, in a child process: a libstdc++ mismatch crashes it.
import subprocess
probe = ("import torch, panonet.ops\ntry:\n    torch.ops.panonet._nearest_by_projection("
         "torch.zeros(3, 2), torch.zeros(4, 3))\nexcept ValueError as e:\n    print(e)")
r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
print("error-message probe:", r.returncode, r.stdout.strip())
if r.returncode != 0 or "got [3, 2] and [4, 3]" not in r.stdout:
    raise SystemExit(f"an error message of the extension crashed (exit {r.returncode}): the "
                     "extension and torch use different copies of libstdc++; see 1-setup.log "
                     "for the compiler, and set CXX to one with a shared libstdc++")'
if step build 2-build.log 240 env PANONET_CUDA=ON TORCH_CUDA_ARCH_LIST="$ARCH" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$PY" -m pip install -v --no-build-isolation --no-deps \
  --no-index --force-reinstall . &&
  step import 2-build.log 60 "$PY" -c "$IMPORT_CHECK" "$REPO"; then
  # The tests' own output (pass/fail lines, -ra summary) is in the log; its last line here.
  # A kernel that never returns must not take the whole budget: one test at most 60 s where
  # pytest-timeout is installed.
  # pytest-xdist, where installed, also turns a crashing test into a failed one (its worker is
  # replaced) instead of ending the run.
  TIMEOUT_ARGS=()
  "$PY" -c "import pytest_timeout" 2>/dev/null && TIMEOUT_ARGS=(--timeout 60)
  "$PY" -c "import xdist" 2>/dev/null && TIMEOUT_ARGS+=(-n 4)
  step tests 3-tests.log 150 env PANONET_EXPECT_CUDA=1 "$PY" -m pytest -q -ra -p no:cacheprovider \
    "${TIMEOUT_ARGS[@]}" -k cuda tests
  ((DRY_RUN)) || tail -n 1 "$LOGS/3-tests.log" | sed 's/^/   /'
  # The loss benchmark first: it is short and carries the GPU targets.
  if step bench-loss 4-bench-loss.log 120 "$PY" benchmarks/bench_discriminative_loss.py \
    --device cuda --out "$LOSS_JSON" && ((!DRY_RUN)); then
    sed -n '/^| size/,$p' "$LOGS/4-bench-loss.log" | sed 's/^/   /'
  fi
  if step bench-upsample 4-bench-upsample.log 60 "$PY" benchmarks/bench_upsample_argmax.py \
    --device cuda --out "$UPSAMPLE_JSON" && ((!DRY_RUN)); then
    sed -n '/^| case/,$p' "$LOGS/4-bench-upsample.log" | sed 's/^/   /'
  fi
  step bench-guided 4-bench-guided.log 90 "$PY" benchmarks/bench_guided_upsample_argmax.py \
    --device cuda --out "$GUIDED_JSON"
  ((DRY_RUN)) || grep -E '^\|' "$LOGS/4-bench-guided.log" | sed 's/^/   /'
  step bench-instances 4-bench-instances.log 60 "$PY" benchmarks/bench_upsample_instances.py \
    --device cuda --out "$UPSAMPLE_INSTANCES_JSON"
  ((DRY_RUN)) || grep -E '^\|' "$LOGS/4-bench-instances.log" | sed 's/^/   /'
  step bench-panoptic 4-bench-panoptic.log 60 "$PY" benchmarks/bench_panoptic_ids.py \
    --device cuda --out "$PANOPTIC_JSON"
  ((DRY_RUN)) || grep -E '^\|' "$LOGS/4-bench-panoptic.log" | sed 's/^/   /'
  # shellcheck disable=SC2086  # MEAN_SHIFT_ARGS is a list of flags
  if step bench-mean-shift 5-bench-mean-shift.log 300 "$PY" benchmarks/bench_mean_shift.py \
    --device cuda $MEAN_SHIFT_ARGS --out "$MEAN_SHIFT_JSON" && ((!DRY_RUN)); then
    sed -n '/^| points/,$p' "$LOGS/5-bench-mean-shift.log" | sed 's/^/   /'
  fi
  step profile 5-profile.log 90 "$PY" benchmarks/profile_kernels.py --device cuda \
    --out "$PROFILE_JSON"
  if ((PIPELINE)); then
    # The short benches first: the demo is the longest step and the likeliest to run out.
    step bench-model 6-bench-model.log 150 "$PY" benchmarks/bench_model.py --device cuda \
      --out "$MODEL_JSON"
    ((DRY_RUN)) || sed -n '/^| stage/,$p' "$LOGS/6-bench-model.log" | sed 's/^/   /'
    step bench-train 7-bench-train.log 270 "$PY" benchmarks/bench_train.py --device cuda \
      --steps 10 --warmup 3 --workers 8 --out "$TRAIN_JSON"
    ((DRY_RUN)) || grep -E '^\|' "$LOGS/7-bench-train.log" | sed 's/^/   /'
    DEMO=$LOGS/demo
    if step demo 8-demo.log 360 "$PY" -m panonet demo --device cuda --no-progress --out "$DEMO"; then
      ((DRY_RUN)) || grep -h -i -E "PQ|AP|mIoU" "$LOGS/8-demo.log" | tail -n 4 | sed 's/^/   /'
    fi
    if [[ -f $DEMO/run/checkpoints/final.pt ]] || ((DRY_RUN)); then
      step bench-trained 9-bench-trained.log 90 "$PY" -m panonet bench --device cuda --half \
        --checkpoint "$DEMO/run/checkpoints/final.pt" --bandwidths "$DEMO/bandwidths.json" \
        --runs 50 --warmup 5 --no-progress --out "$TRAINED_JSON"
    else
      skip bench-trained "the demo wrote no checkpoint"
    fi
    # Images/s the loader alone delivers with 14 workers: augmenting, or whole items for the
    # GPU to augment (augment_on = "device"), from PNG files, the decoded store or memory.
    step bench-loader 9-bench-loader.log 120 "$PY" benchmarks/bench_train.py --device cuda \
      --loader-only --steps 10 --warmup 3 --workers 14 --out "$LOADER_JSON"
    ((DRY_RUN)) || grep -E '^\|' "$LOGS/9-bench-loader.log" | sed 's/^/   /'
  fi
else
  [[ ${SUMMARY[-1]} == "| build |"* ]] && skip import "build failed"
  skip tests "no working build"
  skip bench-loss "no working build"
  skip bench-upsample "no working build"
  skip bench-instances "no working build"
  skip bench-panoptic "no working build"
  skip bench-mean-shift "no working build"
fi

# --- summary, and the files for $OUT -----------------------------------------------------------
{
  echo
  echo "gpu-check summary (${GPU_NAME:-no GPU}, torch ${TORCH_VERSION:-?}, archs $ARCH," \
    "budget ${BUDGET}s, total $(elapsed "$START") s)"
  echo "| step | status | seconds |"
  echo "|---|---|---|"
  printf '%s\n' "${SUMMARY[@]}"
  targets=$(grep -h '^targets met' "$LOGS/4-bench-loss.log" 2>/dev/null)
  [[ -n $targets ]] && echo "discriminative_loss GPU $targets (see $LOSS_JSON)"
  echo "logs: ${LOGS#"$REPO"/}/, results: $LOSS_JSON, $MEAN_SHIFT_JSON"
} | tee "$LOGS/summary.txt"

# $OUT gets two files (a device machine sends back few): the summary, and the logs and JSON of
# this run in one archive.
if [[ -n ${OUT:-} ]] && ((!DRY_RUN)); then
  mkdir -p "$OUT"
  cp "$LOGS/summary.txt" "$OUT"/
  files=()
  for f in "$LOGS"/[1-9]-*.log "$LOSS_JSON" "$UPSAMPLE_JSON" "$UPSAMPLE_INSTANCES_JSON" \
    "$PANOPTIC_JSON" "$MEAN_SHIFT_JSON" "$PROFILE_JSON" "$MODEL_JSON" "$TRAIN_JSON" \
    "$TRAINED_JSON" "$LOADER_JSON" "$LOGS"/demo/metrics.json; do
    [[ -f $f && ! $f -ot $LOGS/.start ]] && files+=("${f#"$REPO"/}")
  done
  tar czf "$OUT/gpu-check.tar.gz" -C "$REPO" "${files[@]}" &&
    echo "in \$OUT: summary.txt, gpu-check.tar.gz (${files[*]##*/})"
fi

((DRY_RUN)) && exit 0
exit $((FAILED ? 1 : 0))
