"""The measured kernel variants: what every `auto` option of `KernelConfig` runs on NVIDIA GPUs
(Triton), the fastest ones measured with results equal to the pure-JAX path, and whether
`impl="auto"` uses the kernels at all (the measured times: docs/results.md). Adopting a device run's winner is an edit here: copy the `spec` of
bench/compress.py's `best` lines (grammar: kernels/config.py).

CPUs (the interpreter) and TPUs keep the reference forms: one bit per radix-select step, the
full select, one-hot compaction and the one-hot aggregation kernel.
"""

MEASURED_ON = "one NVIDIA H200, 2026-11-27, jax 0.11.2, Triton 3.6.0 (bench/device_check.sh)"

# Compression, DOTS:WARPS:RADIX:COMPACT:SELECT: faster than pure JAX and bitwise equal on that
# device (times in docs/results.md), so `impl="auto"` compresses with the kernel on GPUs.
GPU_COMPRESS = "bf16:4:1:onehot:full"

# Aggregation, KERNEL:WARPS:TILES:DOTS: what the Pallas path runs. Slower than pure JAX on that
# device (docs/results.md), so `impl="auto"` aggregates in pure JAX on GPUs until an entry here
# beats it (then set GPU_AGGREGATE_BEATS_PURE).
GPU_AGGREGATE = "onehot:4:1:bf16"
GPU_AGGREGATE_BEATS_PURE = False
