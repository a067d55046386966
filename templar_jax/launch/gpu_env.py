"""Environment for JAX on 8-GPU H100/H200 nodes: XLA flags and NCCL settings, each explained.

Every XLA flag name here was checked against the installed jaxlib (an unknown name in
XLA_FLAGS aborts the process; tests/test_launch_gpu.py runs jax with these flags).
"""

from __future__ import annotations

from templar_jax.model.mesh_choice import HBM_USABLE_FRACTION

# Flags on by default, with the reason.
DEFAULT_XLA_FLAGS: dict[str, str] = {
    "--xla_gpu_enable_latency_hiding_scheduler=true":
        "schedule async collectives (FSDP all-gather / reduce-scatter) to overlap with compute",
}

# Flags users may add through a cluster file's `extra_xla_flags`, documented in launch/README.md.
OPTIONAL_XLA_FLAGS: dict[str, str] = {
    "--xla_gpu_enable_command_buffer=":
        "empty list turns CUDA-graph command buffers off (try it on hangs or launch-related OOMs)",
    "--xla_gpu_all_gather_combine_threshold_bytes=N":
        "merge small all-gathers up to N bytes (fewer, larger collectives)",
    "--xla_gpu_reduce_scatter_combine_threshold_bytes=N":
        "merge small reduce-scatters up to N bytes",
    "--xla_gpu_enable_pipelined_all_gather=true":
        "prefetch the next scanned layer's all-gather inside the layer loop",
}

ENV_NOTES: dict[str, str] = {
    "XLA_FLAGS": "XLA compiler flags (appended to any XLA_FLAGS already set)",
    "XLA_PYTHON_CLIENT_MEM_FRACTION":
        "share of GPU memory JAX preallocates (JAX default 0.75); matches the planner's budget",
    "NCCL_DEBUG": "WARN prints NCCL problems only; use INFO to see the chosen transports",
    "CUDA_VISIBLE_DEVICES": "one process per GPU: the GPU this process owns",
    "NCCL_SOCKET_IFNAME": "network interface(s) for NCCL bootstrap/TCP, e.g. eth0 or ^lo,docker (site-specific)",
    "NCCL_IB_HCA": "InfiniBand/RoCE adapters NCCL may use, e.g. mlx5 (site-specific)",
    "NCCL_IB_GID_INDEX": "RoCE only: GID index of the RoCEv2 address, often 3 (site-specific)",
    "NCCL_NVLS_ENABLE":
        "NVLink SHARP on NVSwitch nodes (H100/H200 HGX); NCCL enables it when supported, "
        "set 0 if it fails to initialise or its buffers cost too much memory",
}

# Site-specific variables: emitted only when a cluster file sets them (shown as comments otherwise).
SITE_VARIABLES = ("NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "NCCL_IB_GID_INDEX", "NCCL_NVLS_ENABLE")


def xla_flags(extra: tuple[str, ...] = ()) -> str:
    return " ".join([*DEFAULT_XLA_FLAGS, *extra])


def gpu_env(site_env: dict[str, str] | None = None, extra_xla_flags: tuple[str, ...] = ()) -> dict[str, str]:
    """Variables every GPU process gets (XLA_FLAGS is the flags to *append*)."""
    env = {
        "XLA_FLAGS": xla_flags(extra_xla_flags),
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{HBM_USABLE_FRACTION:.2f}",
        "NCCL_DEBUG": "WARN",
    }
    env.update(site_env or {})
    return env
