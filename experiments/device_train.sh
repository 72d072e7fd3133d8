#!/usr/bin/env bash
# The trainer's step on a lent GPU, in one call (experiments/train_throughput.py): seconds per
# step, images/s and MFU of the bare step and of the trainer (make_train_fn) for each job, and a
# profile of the trainer's step (experiments/trace_summary.py).
#   bash experiments/device_train.sh OUT_DIR [PEAK_TFLOPS]
# JOBS="config:batch:jitted[,jitted] ..." (default below); PRECISION (default bfloat16);
# TRACE_BATCH: the batch whose first trainer row is traced (default 128).
# Phase 1 runs every job at once (one process each, the host's cores compiling in parallel) into
# JAX's persistent cache and keeps their compile times (upper bounds: the compiles share the host
# and the GPU's autotuning); phase 2 times the jobs one after another, loading the programs from
# that cache. Wheels under .whl/ (ml_collections, and a flax to fall back on) are installed into
# /tmp/site-* when the image lacks them. At most 8 files land in OUT_DIR (the device tool's limit).
set -u -o pipefail
out=${1:?OUT_DIR}
peak=${2:-989}
mkdir -p "$out"
work=/tmp/jaxdiff-device
rm -rf "$work" && mkdir -p "$work"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxdiff-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
py=${PY:-python3}
precision=${PRECISION:-bfloat16}
jobs=${JOBS:-"ddpmpp:128:1,5 cld:128:1 ddpmpp:256:1 cld:64:1"}
trace_batch=${TRACE_BATCH:-128}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv \
  | tee "$out/info.txt"
if [ -d .whl ] && ! $py -c "import ml_collections" 2>/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-mlc .whl/ml_collections-*.whl
  export PYTHONPATH=$PWD:/tmp/site-mlc
fi
smoke() {
  $py - <<'PY'
import jax, flax, optax
from jaxdiff.nets import zoo
net = zoo.build_net(zoo.PAPER_CONFIGS["ddgan_cifar10_discriminator"]())
print("smoke ok: jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      jax.devices())
PY
}
if ! smoke 2>&1 | tee -a "$out/info.txt"; then
  echo "device flax failed the smoke test; installing the carried flax" | tee -a "$out/info.txt"
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-flax .whl/flax-*.whl
  export PYTHONPATH=$PWD:/tmp/site-flax:/tmp/site-mlc
  smoke 2>&1 | tee -a "$out/info.txt" || exit 1
fi

run_job() {  # run_job JOB REPS LOGFILE [extra args]: one train_throughput.py process
  local c b n reps=$2 log=$3
  IFS=: read -r c b n <<<"$1"
  shift 3
  $py experiments/train_throughput.py --configs "$c" --batch "$b" --precision "$precision" \
    --jitted ${n//,/ } --reps "$reps" --no-fwd-bwd --peak-tflops "$peak" \
    --json "$work/rows-$c-$b-r$reps.json" "$@" >"$log" 2>&1
}
export -f run_job
export py precision peak work
deadline=$(( $(date +%s) + ${TOTAL_S:-540} ))

t0=$(date +%s)
for j in $jobs; do
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "${PHASE1_S:-270}" \
    bash -c 'run_job "$@"' _ "$j" 1 "$work/compile-${j//[:,]/_}.log" &
done
wait
echo "phase 1 (parallel compiles) took $(( $(date +%s) - t0 )) s" | tee -a "$out/info.txt"
for f in "$work"/compile-*.log; do echo "== $f"; tail -n 12 "$f"; done >"$out/compile.txt"

t0=$(date +%s)
for j in $jobs; do
  left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 20 ] || { echo "== $j skipped: out of time" >>"$out/table.md"; continue; }
  IFS=: read -r c b n <<<"$j"
  extra=()
  [ "$b" = "$trace_batch" ] && extra=(--trace "$work/trace")
  log=$work/time-${j//[:,]/_}.log
  timeout "$(( left < ${PHASE2_S:-120} ? left : ${PHASE2_S:-120} ))" \
    bash -c 'run_job "$@"' _ "$j" "${REPS:-10}" "$log" "${extra[@]}"
  echo "== $j (rc $?)" >>"$out/table.md"
  cat "$log" >>"$out/table.md"
done
echo "phase 2 (timing) took $(( $(date +%s) - t0 )) s" | tee -a "$out/info.txt"
$py - "$work" "$out/rows.json" <<'PY'
import glob, json, os, sys
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "rows-*.json"))):
    for r in json.load(open(f)):
        rows.append(dict(r, file=os.path.basename(f)))
json.dump(rows, open(sys.argv[2], "w"), indent=1)
PY
for d in "$work"/trace/*/; do
  [ -d "$d" ] || continue
  name=$(basename "$d")
  echo "== $name" >>"$out/summary.md"
  $py experiments/trace_summary.py "$d" --calls 2 >>"$out/summary.md" 2>&1
  f=$(find "$d" -name "*.trace.json.gz" | head -n 1)
  [ -n "$f" ] && cp "$f" "$out/trace-${name%%-n*}.json.gz"
done
cat "$out/table.md" "$out/summary.md" 2>/dev/null | grep -v "^$"
