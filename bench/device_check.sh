#!/usr/bin/env bash
# One-command GPU check of the SparseLoCo Pallas kernels (< 5 min on one H100/H200 by default).
#
#   bash bench/device_check.sh            # results in $OUT if set, else /tmp/templar_device_check/<time>/
#   DEVICE_CHECK_BUDGET_S=480 TRAIN_STEP=1 bash bench/device_check.sh   # + the 1b train step
#   DEVICE_CHECK_CPU_SMOKE=1 bash bench/device_check.sh   # proves the script on a CPU: interpret
#                                         # backend, bench at --scale 32 (no GPU numbers)
#
# Steps (each under its own timeout and all under one deadline, DEVICE_CHECK_BUDGET_S, default
# 290 s, so one hang cannot eat the lease; all output is kept, in at most 5 files; every bench
# row records the seconds it took, compiles included, to size the next run):
#   1. env.txt              GPU, driver, python, jax/jaxlib/triton versions, jax devices
#   2. compress.txt         bench/compress.py at full scale (one 70B layer, 855.7M params):
#                           floor / pure / kernel ms and ns/param, 20-peer aggregation (one
#                           scatter, ordered scatters, kernels), `match`, `deterministic`;
#                           compression variants DOTS:WARPS[:RADIX[:COMPACT[:SELECT]]]
#                           (--variants, most informative first; bench/kernel_resources.py
#                           ranks them by registers and occupancy without a GPU), a stage
#                           profile of two of them (--stage-variants: pass 1 alone,
#                           cut after EF / after the top-k mask), aggregation variants
#                           KERNEL:WARPS:TILES[:DOTS] (--agg-variants), and one `best` line
#                           per step (fastest variant with right results, target met or not;
#                           the targets are an H200's; on an H100 they are at least as strict)
#   3. kernel_tests.txt     the compress/aggregate kernel tests on the GPU with the Triton
#                           backend (KERNEL_TEST_BACKEND=triton), bf16 dots with a radix-2
#                           select (KERNEL_TEST_DOTS="bf16 f32" adds f32 dots with radix 1;
#                           tests/kernel_test_config.py builds the KernelConfig);
#                           the tests run both compactions, the early-exit select and both
#                           aggregation kernels: kernel == the in-order reference
#   4. train_step.txt       only with TRAIN_STEP=1 (its >= 45% MFU target was met on an H200):
#                           bench/train_step.py --model 1b --batch 16 --seq-len 2048, 5 steps,
#                           remat dots_saveable + cuDNN attention (51.5% MFU there;
#                           TRAIN_SWEEP_ALL=1 adds full/none cuDNN and full XLA)
#   5. summary.txt          exit codes and the JSON lines, for pasting into a report
# Adopting a winner: copy its `best` line's `spec` into templar_jax/sparseloco/kernels/tuned.py
# (and set GPU_AGGREGATE_BEATS_PURE when the aggregation kernel beats `agg_pure`).
# Python: $PYTHON if set, else the repo's .venv when its jax sees a GPU, else python3 (the
# device image ships jax + jax-cuda plugins; the repo is put on PYTHONPATH).
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
RESULTS="${OUT:-/tmp/templar_device_check/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
SMOKE="${DEVICE_CHECK_CPU_SMOKE:-0}"
if [ "$SMOKE" = 1 ]; then
  export JAX_PLATFORMS=cpu; BACKEND=interpret
  BENCH_ARGS=(--scale 32 --iters 1 --peers 4 --variants f32:4,bf16:4:2:scatter:early
              --stage-variants bf16:4:1:scatter:early --agg-variants onehot:4:1,scatter:4:2)
  TRAIN_ARGS=(--model tiny --steps 2); TRAIN_SWEEP=("none xla" "none auto")
  TEST_SECS=150  # the interpreter on 2 CPU cores: about 70 s
else
  # cuda first (the default device); cpu too, where the kernel tests compute their in-order
  # reference (tests/conftest.py would default to cpu alone)
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda,cpu}"
  BACKEND=triton
  TEST_SECS=80
  BENCH_ARGS=(--scale 1 --iters 10 --peers 20
              --variants bf16:4,bf16:8:2:scatter:early,bf16:8:1:scatter:early,bf16:16:2:scatter:early,bf16:4:1:scatter:early,bf16:4:1:scatter,bf16:4:1:onehot:early
              --stage-variants bf16:8:2:scatter:early,bf16:4
              --agg-variants scatter:8:1,scatter:4:1,scatter:8:2,onehot:4:1)
  TRAIN_ARGS=(--model 1b --batch 16 --seq-len 2048 --steps 5)
  TRAIN_SWEEP=()  # "remat attention"
  [ "${TRAIN_STEP:-0}" = 1 ] && TRAIN_SWEEP+=("dots_saveable cudnn")
  [ "${TRAIN_SWEEP_ALL:-0}" = 1 ] && TRAIN_SWEEP+=("dots_saveable cudnn" "full cudnn" "none cudnn" "full xla")
fi

PY="${PYTHON:-}"
WANT=gpu; [ "$SMOKE" = 1 ] && WANT=cpu
if [ -z "$PY" ] && [ -x .venv/bin/python ] && \
   .venv/bin/python -c "import jax,sys; sys.exit(jax.default_backend()!='$WANT')" 2>/dev/null; then
  PY=.venv/bin/python
fi
PY="${PY:-python3}"

BUDGET="${DEVICE_CHECK_BUDGET_S:-290}"
step() {  # step NAME SECONDS CMD... : run with a timeout (cut to the time left), append the log
  local name=$1 secs=$2; shift 2          # to $RESULTS/NAME.txt, record rc
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 30 ]; then
    echo "$name skipped: ${left}s left of the ${BUDGET}s budget" | tee -a "$RESULTS/summary.txt"
    return 124
  fi
  [ "$secs" -gt "$left" ] && secs=$left
  local t0=$SECONDS
  echo "=== $*" >>"$RESULTS/$name.txt"
  timeout --kill-after=10 "$secs" "$@" >>"$RESULTS/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0)) ${STEP_NOTE:-}" | tee -a "$RESULTS/summary.txt"
  return $rc
}

: >"$RESULTS/summary.txt"
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c 'import sys, jax, jaxlib; print(sys.version); print("jax", jax.__version__, "jaxlib", jaxlib.__version__); print(jax.devices())'
  "$PY" -c 'import triton; print("triton", triton.__version__)' 2>&1
} >"$RESULTS/env.txt" 2>&1
if ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != '$WANT')" 2>>"$RESULTS/env.txt"; then
  echo "no $WANT backend visible to $PY (see env.txt); nothing to check" | tee -a "$RESULTS/summary.txt"
  exit 2
fi

# the bench first: it is the measurement still missing, and it checks every variant bitwise
# against the pure path (`match`) or the in-order aggregation (`match_ordered`) on a full layer
# (two runs, each under its own timeout, so a slow compile sweep cannot starve the other)
step compress 140 "$PY" bench/compress.py --backend "$BACKEND" "${BENCH_ARGS[@]}" --only compress
step compress 70 "$PY" bench/compress.py --backend "$BACKEND" "${BENCH_ARGS[@]}" --only aggregate

export KERNEL_TEST_BACKEND=$BACKEND  # the kernel tests run the real backend, not interpret
# the Pallas kernels on the device, bitwise against the in-order reference on adversarial input
for dots in ${KERNEL_TEST_DOTS:-bf16}; do  # bf16 with radix-2 select, f32 with radix 1
  radix=1; [ "$dots" = bf16 ] && radix=2
  KERNEL_TEST_VARIANT=$dots:4:$radix STEP_NOTE="dots=$dots radix=$radix" \
    step kernel_tests "$TEST_SECS" "$PY" -m pytest \
    tests/test_kernels_compress.py tests/test_kernels_aggregate.py -q -rfE -p no:cacheprovider
done

for combo in ${TRAIN_SWEEP[@]+"${TRAIN_SWEEP[@]}"}; do
  set -- $combo
  STEP_NOTE="remat=$1 attention=$2" step train_step 100 \
    "$PY" bench/train_step.py "${TRAIN_ARGS[@]}" --remat "$1" --attention "$2"
done

{ echo "--- compress JSON"; grep '^{' "$RESULTS/compress.txt" 2>/dev/null
  echo "--- kernel test tail"; tail -n 15 "$RESULTS/kernel_tests.txt"
  echo "--- train_step JSON"; grep '^JSON' "$RESULTS/train_step.txt" 2>/dev/null
  echo "--- train_step errors"; grep -iE 'error|Traceback' "$RESULTS/train_step.txt" | head -n 20
} >>"$RESULTS/summary.txt"
cat "$RESULTS/summary.txt"
echo "results in $RESULTS"
