"""The `impl="pallas"` switch of the transformation and the aggregation (interpret mode on CPU)
gives the same payloads, error feedback and aggregate as the default pure-JAX path; "auto"
and the kernels' dot mode resolve as measured."""

import jax
import numpy as np
import pytest

from templar_jax.sparseloco import AggregationError, aggregate, sparseloco
from templar_jax.sparseloco.impl import resolve_impl
from templar_jax.sparseloco.kernels.backend import (
    AGG_KERNEL_ENV, KERNEL_DOTS_ENV, KERNEL_RADIX_BITS_ENV, KernelConfigError, aggregation_kernel,
    kernel_dots_bf16, kernel_radix_bits)


def _tree(seed):
    rng = np.random.default_rng(seed)
    return {"layers": {"w": rng.standard_normal((2, 64, 128)).astype(np.float32)},
            "emb": rng.standard_normal((128, 64)).astype(np.float32)}


def test_pallas_switch_matches_pure_jax():
    params, delta = _tree(0), _tree(1)
    outs = {}
    for impl in ("jax", "pallas"):
        tx = sparseloco(impl=impl)
        state = tx.init(params)
        payload, state = tx.update(delta, state)
        payload2, state = tx.update(_tree(2), state)
        agg = aggregate([payload, payload2], params, impl=impl)
        outs[impl] = jax.device_get((payload, state.error, agg))
    flat_a, _ = jax.tree.flatten(outs["jax"])
    flat_b, _ = jax.tree.flatten(outs["pallas"])
    assert len(flat_a) == len(flat_b) > 0
    for a, b in zip(flat_a, flat_b):
        np.testing.assert_array_equal(a, b)


def test_unknown_impl_is_a_clear_error():
    with pytest.raises(ValueError, match="implementation"):
        sparseloco(impl="cuda")
    with pytest.raises(AggregationError, match="implementation"):
        aggregate([], _tree(0), impl="cuda")


def test_auto_picks_what_was_measured_faster(monkeypatch):
    """CPU: pure JAX for both. GPU: the compression kernel, pure-JAX aggregation."""
    assert resolve_impl("auto", "compress") == resolve_impl("auto", "aggregate") == "jax"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_impl("auto", "compress") == "pallas"
    assert resolve_impl("auto", "aggregate") == "jax"
    assert resolve_impl("pallas", "aggregate") == "pallas" and resolve_impl("x", "compress") is None


def test_dots_mode_auto_is_bf16_on_triton_only(monkeypatch):
    monkeypatch.delenv(KERNEL_DOTS_ENV, raising=False)
    assert kernel_dots_bf16("triton") and not kernel_dots_bf16("interpret")
    monkeypatch.setenv(KERNEL_DOTS_ENV, "f32")
    assert not kernel_dots_bf16("triton")
    monkeypatch.setenv(KERNEL_DOTS_ENV, "fp8")
    with pytest.raises(KernelConfigError, match=KERNEL_DOTS_ENV):
        kernel_dots_bf16("triton")


def test_radix_bits_knob(monkeypatch):
    monkeypatch.delenv(KERNEL_RADIX_BITS_ENV, raising=False)
    assert kernel_radix_bits() == 1
    monkeypatch.setenv(KERNEL_RADIX_BITS_ENV, "2")
    assert kernel_radix_bits() == 2
    monkeypatch.setenv(KERNEL_RADIX_BITS_ENV, "8")
    with pytest.raises(KernelConfigError, match=KERNEL_RADIX_BITS_ENV):
        kernel_radix_bits()


def test_aggregation_kernel_knob(monkeypatch):
    """auto keeps the measured one-hot kernel; scatter is refused on Mosaic TPU by name."""
    monkeypatch.delenv(AGG_KERNEL_ENV, raising=False)
    assert aggregation_kernel("triton") == aggregation_kernel("mosaic_tpu") == "onehot"
    monkeypatch.setenv(AGG_KERNEL_ENV, "scatter")
    assert aggregation_kernel("triton") == aggregation_kernel("interpret") == "scatter"
    with pytest.raises(KernelConfigError, match="Mosaic TPU"):
        aggregation_kernel("mosaic_tpu")
    monkeypatch.setenv(AGG_KERNEL_ENV, "sort")
    with pytest.raises(KernelConfigError, match=AGG_KERNEL_ENV):
        aggregation_kernel("triton")
