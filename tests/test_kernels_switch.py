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


def test_select_mode_knob(monkeypatch):
    from templar_jax.sparseloco.kernels.backend import KERNEL_SELECT_ENV, kernel_select_early

    monkeypatch.delenv(KERNEL_SELECT_ENV, raising=False)
    assert not kernel_select_early()  # auto keeps the measured full descent
    monkeypatch.setenv(KERNEL_SELECT_ENV, "early")
    assert kernel_select_early()
    monkeypatch.setenv(KERNEL_SELECT_ENV, "fast")
    with pytest.raises(KernelConfigError, match=KERNEL_SELECT_ENV):
        kernel_select_early()


def test_variant_specs_parse_to_knobs_and_reject_bad_fields():
    from templar_jax.sparseloco.kernels.backend import (
        AGG_KERNEL_ENV, KERNEL_COMPACT_ENV, KERNEL_SELECT_ENV, TRITON_NUM_WARPS_ENV)
    from templar_jax.sparseloco.kernels.variants import (
        knob_env, parse_aggregate_variant, parse_compress_variant)

    v = parse_compress_variant("bf16:8")
    assert v == {"dots": "bf16", "num_warps": "8", "radix_bits": "1", "compact": "auto",
                 "select": "auto"}
    env = knob_env(parse_compress_variant("bf16:8:1:scatter:early"))
    assert env[KERNEL_COMPACT_ENV] == "scatter" and env[KERNEL_SELECT_ENV] == "early"
    assert env[TRITON_NUM_WARPS_ENV] == "8" and len(env) == 5
    agg = parse_aggregate_variant("scatter:8:4")
    assert agg == {"kernel": "scatter", "num_warps": "8", "tiles": "4", "dots": "auto"}
    assert knob_env(agg) == {AGG_KERNEL_ENV: "scatter", TRITON_NUM_WARPS_ENV: "8",
                             KERNEL_DOTS_ENV: "auto"}
    for bad, parse in [("bf16", parse_compress_variant), ("bf16:3", parse_compress_variant),
                       ("bf16:4:1:scatter:late", parse_compress_variant),
                       ("bf16:4:1:scatter:early:x", parse_compress_variant),
                       ("sort:4:1", parse_aggregate_variant),
                       ("scatter:4", parse_aggregate_variant)]:
        with pytest.raises(KernelConfigError, match="bad kernel variant"):
            parse(bad)
