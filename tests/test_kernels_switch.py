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
    assert kernel_radix_bits("interpret") == kernel_radix_bits("triton") == 1
    monkeypatch.setenv(KERNEL_RADIX_BITS_ENV, "2")
    assert kernel_radix_bits("interpret") == kernel_radix_bits("triton") == 2
    monkeypatch.setenv(KERNEL_RADIX_BITS_ENV, "8")
    with pytest.raises(KernelConfigError, match=KERNEL_RADIX_BITS_ENV):
        kernel_radix_bits("triton")


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
    # auto keeps the measured full descent
    assert not kernel_select_early("triton") and not kernel_select_early("interpret")
    monkeypatch.setenv(KERNEL_SELECT_ENV, "early")
    assert kernel_select_early("triton") and kernel_select_early("interpret")
    monkeypatch.setenv(KERNEL_SELECT_ENV, "fast")
    with pytest.raises(KernelConfigError, match=KERNEL_SELECT_ENV):
        kernel_select_early("triton")


def test_variant_specs_parse_to_knobs_and_reject_bad_fields():
    from templar_jax.sparseloco.kernels.backend import (
        AGG_KERNEL_ENV, KERNEL_COMPACT_ENV, KERNEL_SELECT_ENV, TRITON_NUM_WARPS_ENV)
    from templar_jax.sparseloco.kernels.variants import (
        knob_env, parse_aggregate_variant, parse_compress_variant)

    v = parse_compress_variant("bf16:8")
    assert v == {"dots": "bf16", "num_warps": "8", "radix_bits": "1", "compact": "onehot",
                 "select": "full"}
    env = knob_env(parse_compress_variant("bf16:8:1:scatter:early"))
    assert env[KERNEL_COMPACT_ENV] == "scatter" and env[KERNEL_SELECT_ENV] == "early"
    assert env[TRITON_NUM_WARPS_ENV] == "8" and len(env) == 5
    agg = parse_aggregate_variant("scatter:8:4")
    assert agg == {"kernel": "scatter", "num_warps": "8", "tiles": "4", "dots": "bf16"}
    assert knob_env(agg) == {AGG_KERNEL_ENV: "scatter", TRITON_NUM_WARPS_ENV: "8",
                             KERNEL_DOTS_ENV: "bf16"}
    for bad, parse in [("bf16", parse_compress_variant), ("bf16:3", parse_compress_variant),
                       ("bf16:4:1:scatter:late", parse_compress_variant),
                       ("bf16:4:1:scatter:early:x", parse_compress_variant),
                       ("sort:4:1", parse_aggregate_variant),
                       ("scatter:4", parse_aggregate_variant)]:
        with pytest.raises(KernelConfigError, match="bad kernel variant"):
            parse(bad)




def _resolved(backend):
    """What every knob resolves to on `backend` when traced now."""
    from templar_jax.sparseloco.kernels import backend as kb

    return {"compress": {"dots": "bf16" if kb.kernel_dots_bf16(backend) else "f32",
                         "num_warps": str(kb.triton_num_warps("compress")),
                         "radix_bits": str(kb.kernel_radix_bits(backend)),
                         "compact": kb.kernel_compaction(backend),
                         "select": "early" if kb.kernel_select_early(backend) else "full"},
            "aggregate": {"kernel": kb.aggregation_kernel(backend),
                          "num_warps": str(kb.triton_num_warps("aggregate")),
                          "tiles": str(kb.default_tiles_per_block(backend, "aggregate")),
                          "dots": "bf16" if kb.kernel_dots_bf16(backend, "aggregate") else "f32"}}


def test_auto_knobs_run_the_tuned_gpu_variants_and_the_reference_elsewhere(monkeypatch):
    """On Triton every `auto` knob is the tuned.py variant's field (adopting a winner is an
    edit there); the interpreter keeps the reference forms; an environment value wins."""
    from templar_jax.sparseloco.kernels import tuned
    from templar_jax.sparseloco.kernels.variants import (
        parse_aggregate_variant, parse_compress_variant)

    from templar_jax.sparseloco.kernels.variants import AGGREGATE_FIELDS, COMPRESS_FIELDS

    for _, env, _, _ in COMPRESS_FIELDS + AGGREGATE_FIELDS:
        if env is not None:
            monkeypatch.delenv(env, raising=False)
    want = {"compress": parse_compress_variant(tuned.GPU_COMPRESS),
            "aggregate": parse_aggregate_variant(tuned.GPU_AGGREGATE)}
    assert _resolved("triton") == want
    reference = {"dots": "f32", "radix_bits": "1", "compact": "onehot", "select": "full"}
    got = _resolved("interpret")
    assert {k: got["compress"][k] for k in reference} == reference
    assert got["aggregate"]["kernel"] == "onehot" and got["aggregate"]["tiles"] == "1"

    monkeypatch.setattr(tuned, "GPU_COMPRESS", "bf16:8:2:scatter:early")
    monkeypatch.setattr(tuned, "GPU_AGGREGATE", "scatter:8:2:bf16")
    assert _resolved("triton") == {"compress": parse_compress_variant("bf16:8:2:scatter:early"),
                                   "aggregate": parse_aggregate_variant("scatter:8:2:bf16")}
    assert {k: _resolved("interpret")["compress"][k] for k in reference} == reference
    from templar_jax.sparseloco.kernels.backend import KERNEL_COMPACT_ENV, TRITON_NUM_WARPS_ENV

    monkeypatch.setenv(KERNEL_COMPACT_ENV, "onehot")
    monkeypatch.setenv(TRITON_NUM_WARPS_ENV, "16")
    got = _resolved("triton")
    assert got["compress"]["compact"] == "onehot" and got["aggregate"]["num_warps"] == "16"


def test_impl_auto_aggregates_with_the_kernel_only_once_tuned_says_it_wins(monkeypatch):
    from templar_jax.sparseloco.kernels import tuned

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_impl("auto", "aggregate") == "jax"
    monkeypatch.setattr(tuned, "GPU_AGGREGATE_BEATS_PURE", True)
    assert resolve_impl("auto", "aggregate") == "pallas"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert resolve_impl("auto", "aggregate") == "jax"


def test_tuned_specs_name_every_field():
    """A tuned spec spells out every field, so reading it never depends on a parser default;
    `full_spec` (what the bench's `best` line prints) writes that form."""
    from templar_jax.sparseloco.kernels import tuned
    from templar_jax.sparseloco.kernels.variants import (
        full_spec, parse_aggregate_variant, parse_compress_variant)

    assert "auto" not in tuned.GPU_COMPRESS.split(":") + tuned.GPU_AGGREGATE.split(":")
    assert full_spec(parse_compress_variant(tuned.GPU_COMPRESS)) == tuned.GPU_COMPRESS
    assert full_spec(parse_aggregate_variant(tuned.GPU_AGGREGATE)) == tuned.GPU_AGGREGATE
    assert full_spec(parse_compress_variant("bf16:8")) == "bf16:8:1:onehot:full"
    assert full_spec(parse_aggregate_variant("scatter:8:2")) == "scatter:8:2:bf16"
