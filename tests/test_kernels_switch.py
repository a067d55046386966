"""Kernel choice is configuration: `impl` picks the pure or Pallas core (interpret mode on CPU;
same payloads, error feedback and aggregate), a `KernelConfig` picks the kernel variant as a
static argument (a switched option retraces and runs the new variant; no cache is cleared), and
its `auto` fields resolve to the measured variants of kernels/tuned.py on Triton only."""

import importlib
import re
from functools import partial

import jax
import numpy as np
import pytest

from templar_jax.sparseloco import (
    AggregationError, CompressionConfigError, KernelConfig, KernelConfigError, aggregate,
    compress_tensor, sparseloco)
from templar_jax.sparseloco.dispatch import resolve_impl
from templar_jax.sparseloco.kernels import tuned
from templar_jax.sparseloco.kernels.config import UNMEASURED, tuned_config


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
    assert resolve_impl("pallas", "aggregate") == "pallas"
    with pytest.raises(CompressionConfigError, match="'x'"):
        resolve_impl("x", "compress")


def _aggregate_traces(monkeypatch):
    """The aggregation cores built while tracing (a cache hit builds none)."""
    # the package's `aggregate` is the function; the module is reached by its path
    agg_module = importlib.import_module("templar_jax.sparseloco.aggregate")
    built = []

    def recording(impl, kernel, ordered=False):
        built.append((impl, kernel))
        return original(impl, kernel, ordered)

    original = agg_module.aggregate_core
    monkeypatch.setattr(agg_module, "aggregate_core", recording)
    return built


def test_switching_the_aggregation_kernel_retraces_and_runs_it(monkeypatch):
    """No cache clearing: each config is its own jit cache entry (traced once, then reused),
    its trace holds that variant's kernel, and every variant gives the pure path's bits."""
    from templar_jax.sparseloco.aggregate import aggregate_stacked
    from templar_jax.sparseloco.payload import stack_peers

    rng = np.random.default_rng(31)
    shape = (64, 320)  # a shape no other test aggregates, so the first calls trace
    peers = [compress_tensor(rng.standard_normal(shape).astype(np.float32)) for _ in range(3)]
    stacked, valid = stack_peers(peers)
    kw = dict(shape=shape, batch_ndim=0, chunk=64, rule="median_clip")
    want = np.asarray(aggregate_stacked(stacked, valid, **kw)).view(np.int32)
    built = _aggregate_traces(monkeypatch)
    for kernel in ("onehot", "scatter", "onehot", "scatter"):
        config = KernelConfig(backend="interpret", aggregate=kernel)
        got = aggregate_stacked(stacked, valid, impl="pallas", kernel=config, **kw)
        np.testing.assert_array_equal(np.asarray(got).view(np.int32), want)
    # one trace per config, none for the repeats
    assert [k.aggregate for _, k in built] == ["onehot", "scatter"]
    kernels = {"onehot": "sparseloco_aggregate", "scatter": "sparseloco_aggregate_scatter"}
    for kernel, name in kernels.items():
        config = KernelConfig(backend="interpret", aggregate=kernel)
        jaxpr = str(aggregate_stacked.trace(stacked, valid, impl="pallas", kernel=config,
                                            **kw).jaxpr)
        assert set(re.findall(r"sparseloco_aggregate\w*", jaxpr)) == {name}


def test_switching_the_compaction_retraces_and_runs_it(monkeypatch):
    """The transformation's compiled update is keyed by its KernelConfig: the scatter
    compaction (prefix sums: a cumsum in the trace) and the one-hot one each compile once and
    give the pure path's payloads and error feedback."""
    from templar_jax.sparseloco import transform
    from templar_jax.sparseloco.geometry import tensor_geometry
    from templar_jax.sparseloco.kernels.compress import ef_compress_tensor_pallas

    rng = np.random.default_rng(32)
    params = {"w": rng.standard_normal((64, 448)).astype(np.float32)}  # unique to this test
    delta = {"w": rng.standard_normal((64, 448)).astype(np.float32)}
    tx = sparseloco()
    want = jax.device_get(tx.update(delta, tx.init(params)))
    built = []
    original = transform.compress_core
    monkeypatch.setattr(transform, "compress_core",
                        lambda impl, kernel: built.append(kernel) or original(impl, kernel))
    _, geom = tensor_geometry((64, 448))
    for compact in ("onehot", "scatter", "onehot"):
        config = KernelConfig(backend="interpret", compact=compact)
        tx = sparseloco(impl="pallas", kernel=config)
        got = jax.device_get(tx.update(delta, tx.init(params)))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.asarray(a).reshape(-1).view(np.uint8),
                                          np.asarray(b).reshape(-1).view(np.uint8))
        jaxpr = str(jax.make_jaxpr(partial(ef_compress_tensor_pallas, beta=0.95, geom=geom,
                                           config=config))(params["w"], delta["w"]))
        assert ("cumsum" in jaxpr) == (compact == "scatter")
    assert [k.compact for k in built] == ["onehot", "scatter"]


def test_dots_mode_auto_is_bf16_on_triton_only():
    assert KernelConfig(backend="triton").resolve().dots == "bf16"
    assert KernelConfig(backend="interpret").resolve().dots == "f32"
    assert KernelConfig(backend="triton", dots="f32").resolve().dots == "f32"
    with pytest.raises(KernelConfigError, match="sparseloco.kernel.dots='fp8'"):
        KernelConfig(dots="fp8")


def test_radix_bits_option():
    assert (KernelConfig(backend="interpret").resolve().radix_bits
            == KernelConfig(backend="triton").resolve().radix_bits == 1)
    assert (KernelConfig(backend="interpret", radix_bits=2).resolve().radix_bits
            == KernelConfig(backend="triton", radix_bits=2).resolve().radix_bits == 2)
    with pytest.raises(KernelConfigError, match="sparseloco.kernel.radix_bits=8"):
        KernelConfig(radix_bits=8)


def test_aggregation_kernel_option():
    """auto keeps the measured one-hot kernel; scatter is refused on Mosaic TPU by name."""
    for backend in ("triton", "mosaic_tpu"):
        assert KernelConfig(backend=backend).resolve("aggregate").aggregate == "onehot"
    for backend in ("triton", "interpret"):
        config = KernelConfig(backend=backend, aggregate="scatter")
        assert config.resolve("aggregate").aggregate == "scatter"
    with pytest.raises(KernelConfigError, match="Mosaic TPU"):
        KernelConfig(backend="mosaic_tpu", aggregate="scatter").resolve("aggregate")
    with pytest.raises(KernelConfigError, match="Mosaic TPU"):
        KernelConfig(backend="mosaic_tpu", compact="scatter").resolve("compress")
    with pytest.raises(KernelConfigError, match="sparseloco.kernel.aggregate='sort'"):
        KernelConfig(aggregate="sort")


def test_select_mode_option():
    # auto keeps the measured full descent
    assert KernelConfig(backend="triton").resolve().select == "full"
    assert KernelConfig(backend="interpret").resolve().select == "full"
    for backend in ("triton", "interpret"):
        assert KernelConfig(backend=backend, select="early").resolve().select == "early"
    with pytest.raises(KernelConfigError, match="sparseloco.kernel.select='fast'"):
        KernelConfig(select="fast")


def test_variant_specs_parse_to_configs_and_reject_bad_fields():
    assert KernelConfig.parse("bf16:8", "compress") == KernelConfig(
        dots="bf16", num_warps=8, radix_bits=1, compact="onehot", select="full")
    config = KernelConfig.parse("bf16:8:1:scatter:early", "compress", backend="triton")
    assert config.compact == "scatter" and config.select == "early" and config.num_warps == 8
    # the spec sets the five compression fields; the aggregation ones stay auto
    assert config.aggregate == "auto" and config.aggregate_tiles == 0
    assert config.backend == "triton"
    agg = KernelConfig.parse("scatter:8:4", "aggregate")
    assert agg == KernelConfig(aggregate="scatter", num_warps=8, aggregate_tiles=4, dots="bf16")
    for bad, op in [("bf16", "compress"), ("bf16:3", "compress"),
                    ("bf16:4:1:scatter:late", "compress"),
                    ("bf16:4:1:scatter:early:x", "compress"),
                    ("sort:4:1", "aggregate"), ("scatter:4", "aggregate")]:
        with pytest.raises(KernelConfigError, match="bad kernel variant"):
            KernelConfig.parse(bad, op)
    with pytest.raises(KernelConfigError, match="unknown kernel op"):
        KernelConfig.parse("bf16:4", "train")


def test_auto_options_run_the_tuned_gpu_variants_and_the_reference_elsewhere(monkeypatch):
    """On Triton every `auto` option is the tuned.py variant's field (adopting a winner is an
    edit there); the interpreter keeps the reference forms; an explicit value wins."""
    def resolved(backend, **fields):
        config = KernelConfig(backend=backend, **fields)
        return {op: config.resolve(op).spec(op) for op in ("compress", "aggregate")}

    assert resolved("triton") == {"compress": tuned.GPU_COMPRESS,
                                  "aggregate": tuned.GPU_AGGREGATE}
    reference = "f32:4:1:onehot:full"
    got = resolved("interpret")
    assert got["compress"] == reference and got["aggregate"].startswith("onehot:4:1:")

    monkeypatch.setattr(tuned, "GPU_COMPRESS", "bf16:8:2:scatter:early")
    monkeypatch.setattr(tuned, "GPU_AGGREGATE", "scatter:8:2:bf16")
    assert resolved("triton") == {"compress": "bf16:8:2:scatter:early",
                                  "aggregate": "scatter:8:2:bf16"}
    assert resolved("interpret")["compress"] == reference
    got = resolved("triton", compact="onehot", num_warps=16)
    assert got["compress"] == "bf16:16:2:onehot:early" and got["aggregate"] == "scatter:16:2:bf16"
    # Mosaic TPU's 128-lane blocks: 8 chunks per aggregation program unless set
    assert KernelConfig(backend="mosaic_tpu").resolve("aggregate").aggregate_tiles == 8
    assert KernelConfig(backend="mosaic_tpu", aggregate_tiles=2).resolve("aggregate").aggregate_tiles == 2


def test_resolve_is_idempotent_and_hashable():
    config = KernelConfig(backend="triton", select="early")
    for op in ("compress", "aggregate"):
        once = config.resolve(op)
        assert once.resolve(op) == once and hash(once) == hash(config.resolve(op))
        assert "auto" not in once.spec(op).split(":") and once.backend == "triton"


def test_impl_auto_aggregates_with_the_kernel_only_once_tuned_says_it_wins(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_impl("auto", "aggregate") == "jax"
    monkeypatch.setattr(tuned, "GPU_AGGREGATE_BEATS_PURE", True)
    assert resolve_impl("auto", "aggregate") == "pallas"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert resolve_impl("auto", "aggregate") == "jax"


def test_tuned_specs_name_every_field():
    """A tuned spec spells out every field, so reading it never depends on a parser default;
    `spec` (what the bench's `best` line prints) writes that form."""
    assert "auto" not in tuned.GPU_COMPRESS.split(":") + tuned.GPU_AGGREGATE.split(":")
    assert tuned_config("compress").spec("compress") == tuned.GPU_COMPRESS
    assert tuned_config("aggregate").spec("aggregate") == tuned.GPU_AGGREGATE
    assert KernelConfig.parse("bf16:8", "compress").spec("compress") == "bf16:8:1:onehot:full"
    assert KernelConfig.parse("scatter:8:2", "aggregate").spec("aggregate") == "scatter:8:2:bf16"


def test_unmeasured_options_are_listed_in_one_place():
    """The tuned (measured) variants use no unmeasured option; a config names its own."""
    for op in ("compress", "aggregate"):
        assert tuned_config(op).unmeasured() == ()
    config = KernelConfig(compact="scatter", select="early", radix_bits=2)
    assert config.unmeasured() == ("radix_bits=2", "compact=scatter", "select=early")
    assert set(UNMEASURED) <= {"backend", "dots", "num_warps", "radix_bits", "compact",
                               "select", "aggregate", "aggregate_tiles"}
