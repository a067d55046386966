"""The kernel tests' base `KernelConfig`: the Pallas interpreter on CPU. bench/device_check.sh runs
the same tests on a GPU with KERNEL_TEST_BACKEND=triton and KERNEL_TEST_VARIANT=DOTS:WARPS[:RADIX]
(a compression spec, sparseloco/kernels/config.py) for the dot mode, warps and radix."""

import dataclasses
import os

from templar_jax.sparseloco.kernels.config import KernelConfig

BACKEND = os.environ.get("KERNEL_TEST_BACKEND", "interpret")


def kernel_config(**fields) -> KernelConfig:
    """The base config with `fields` replaced (e.g. compact="scatter", aggregate="onehot")."""
    variant = os.environ.get("KERNEL_TEST_VARIANT")
    base = (KernelConfig.parse(variant, "compress", backend=BACKEND) if variant
            else KernelConfig(backend=BACKEND))
    return dataclasses.replace(base, **fields)
