#!/usr/bin/env bash
# Throughput of every paper network on a lent GPU, in one call (experiments/network_throughput.py).
#   bash experiments/device_throughput.sh OUT_DIR [PEAK_TFLOPS]
# Phase 1 compiles every (config, dtype) in its own process at once (many host cores) into JAX's
# persistent cache and records cold compile times; phase 2 times them one after another in a single
# process that loads the compiled programs from that cache. Wheels under .whl/ (ml_collections, and
# a flax to fall back on) are installed into /tmp/site when the image lacks them.
set -u
out=${1:?OUT_DIR}
peak=${2:-989}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxdiff-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0 XLA_PYTHON_CLIENT_PREALLOCATE=false
py=python3
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
if [ -d .whl ]; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-mlc .whl/ml_collections-*.whl
  export PYTHONPATH=$PWD:/tmp/site-mlc
fi
smoke() {
  $py - <<'PY'
import jax, flax
from jaxdiff.nets import zoo
net = zoo.build_net(zoo.PAPER_CONFIGS["ddgan_cifar10_discriminator"]())
print("smoke ok: jax", jax.__version__, "flax", flax.__version__, jax.devices())
PY
}
if ! smoke; then
  echo "device flax failed the smoke test; installing the carried flax"
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-flax .whl/flax-*.whl
  export PYTHONPATH=$PWD:/tmp/site-flax:/tmp/site-mlc
  smoke || exit 1
fi
batches="ddgan_celebahq256_generator=8 ddgan_celebahq256_discriminator=8 lsgm_cifar10_vae=32"
configs=${CONFIGS:-$($py -c "from jaxdiff.nets import zoo; print(' '.join(sorted(zoo.PAPER_CONFIGS)))")}
t0=$(date +%s)
for c in $configs; do
  for d in ${DTYPES:-bfloat16 float32}; do
    timeout "${PHASE1_S:-240}" $py experiments/network_throughput.py --configs "$c" --dtypes "$d" \
      --batch "${BATCH:-64}" --batch-for $batches --compile-only --json "$out/compile.jsonl" \
      >"$out/compile-$c-$d.log" 2>&1 &
  done
done
wait
echo "phase 1 (parallel compiles) took $(( $(date +%s) - t0 )) s; rows: $(wc -l <"$out/compile.jsonl")"
grep -h FAILED "$out"/compile-*.log
tail -n 3 "$out"/compile-*.log >"$out/compile-logs.txt" && rm "$out"/compile-*.log
done_configs=$($py -c "
import json, sys
rows = [json.loads(l) for l in open('$out/compile.jsonl')]
print(' '.join(sorted({r['net'] for r in rows})))")
t0=$(date +%s)
timeout "${PHASE2_S:-200}" $py experiments/network_throughput.py --configs $done_configs \
  --dtypes ${DTYPES:-bfloat16 float32} --batch "${BATCH:-64}" --batch-for $batches --reps "${REPS:-10}" --peak-tflops "$peak" \
  --compile-times "$out/compile.jsonl" --json "$out/time.jsonl" 2>&1 | tee "$out/table.md"
echo "phase 2 (timing) took $(( $(date +%s) - t0 )) s"
