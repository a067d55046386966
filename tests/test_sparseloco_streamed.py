"""The peer-at-a-time aggregation (`sparseloco.streamed`) against the stacked default
(`aggregate.aggregate`): the same bits for both rules, with clipping active, peers dropped for
some reference tensors, on one device and per shard on 8 fake CPU devices."""

import functools
from collections.abc import Mapping

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from templar_jax.sparseloco import AggregationError, aggregate, compress_tensor
from templar_jax.sparseloco.streamed import aggregate_streamed
from templar_jax.wire.synthetic import overflowing

SPECS = {  # flat name: (shape, spec on the (data, fsdp, tensor) mesh)
    "layers/mlp/w_up": ((2, 256, 512), P(None, "fsdp", "tensor")),  # stacked: 2 reference tensors
    "embed/embedding": ((512, 256), P("tensor", "fsdp")),
    "layers/attn_norm/scale": ((2, 256), P(None, "fsdp")),
    "final_norm/scale": ((256,), P(("fsdp", "tensor"))),
    "head/w": ((96, 130), P("fsdp", None)),  # shards would split chunks: aggregated unsharded
}


def peer_payloads(n_peers, seed):
    """The first `n_peers` of `peer_pool(seed)` (new dicts: a test may replace a tensor)."""
    return [dict(p) for p in peer_pool(seed)[:n_peers]]


@functools.lru_cache(maxsize=None)
def peer_pool(seed, n_peers=20):
    """Correlated peers (shared signal + own noise) at different scales, so indices collide and
    the median clip scales the larger peers down."""
    rng = np.random.default_rng(seed)
    out = [{} for _ in range(n_peers)]
    for name, (shape, _) in SPECS.items():
        common = rng.standard_normal(shape).astype(np.float32) * 3
        for i in range(n_peers):
            x = (common + rng.standard_normal(shape)) * (0.5 + i * rng.uniform(0.5, 2.0))
            tp = compress_tensor(x.astype(np.float32), batch_ndim=int(name.startswith("layers/")))
            out[i][name] = tp._replace(**{f: np.asarray(getattr(tp, f)) for f in tp._fields})
    return out


def with_hostile_layer(payloads):
    """Peer 1's layer 0 of w_up decodes to inf: dropped there only, by both paths."""
    tp = payloads[1]["layers/mlp/w_up"]
    bad = overflowing(tp)
    shift, lut = tp.shift.copy(), tp.lut.copy()
    shift[0], lut[0] = bad.shift[0], bad.lut[0]
    payloads[1] = {**payloads[1], "layers/mlp/w_up": tp._replace(shift=shift, lut=lut)}
    return payloads


class CountingPayload(Mapping):
    """A payload that counts reads of each tensor (as a SpooledPayload decodes on each read)."""

    def __init__(self, payload, reads):
        self.payload, self.reads = payload, reads

    def __getitem__(self, name):
        self.reads[name] = self.reads.get(name, 0) + 1
        return self.payload[name]

    def __iter__(self):
        return iter(self.payload)

    def __len__(self):
        return len(self.payload)

    def __contains__(self, name):
        return name in self.payload


def assert_same_bits(got, want):
    assert set(got) == set(want)
    for name in want:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert g.shape == w.shape and g.dtype == w.dtype == np.float32, name
        np.testing.assert_array_equal(g.view(np.int32), w.view(np.int32), err_msg=name)


def nested(flat):
    out = {}
    for name, v in flat.items():
        node = out
        *path, leaf = name.split("/")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = v
    return out


def flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = v
    return out


@pytest.mark.parametrize("n_peers", [1, 2, 5, 20])
@pytest.mark.parametrize("rule", ["median_clip", "mean"])
def test_streamed_equals_the_stacked_default_bitwise(n_peers, rule):
    payloads = peer_payloads(n_peers, seed=0)
    if n_peers > 2:
        payloads = with_hostile_layer(payloads)
    like = nested({name: shape for name, (shape, _) in SPECS.items()})
    want = flat(aggregate(payloads, like, rule=rule))
    reads = {}
    got = flat(aggregate_streamed([CountingPayload(p, reads) for p in payloads], like, rule=rule))
    assert_same_bits(got, want)
    assert reads == {name: 2 * n_peers for name in SPECS}  # one norm pass, one scatter pass
    if rule == "median_clip" and n_peers > 1:  # clipping changed the result (it is active)
        assert not np.array_equal(np.asarray(want["embed/embedding"]),
                                  np.asarray(flat(aggregate(payloads, like, rule="mean"))["embed/embedding"]))


@pytest.fixture(scope="module")
def mesh():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices; tests/conftest.py sets them")
    return jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)


@pytest.mark.parametrize("n_peers", [1, 2, 5, 20])
@pytest.mark.parametrize("rule", ["median_clip", "mean"])
def test_streamed_per_shard_equals_the_default_bitwise(mesh, n_peers, rule):
    payloads = peer_payloads(n_peers, seed=1)
    if n_peers > 2:
        payloads = with_hostile_layer(payloads)
    like = nested({name: jax.ShapeDtypeStruct(shape, np.float32, sharding=NamedSharding(mesh, spec))
                   for name, (shape, spec) in SPECS.items()})
    specs = {name: spec for name, (_, spec) in SPECS.items()}
    want = flat(aggregate(payloads, like, rule=rule, mesh=mesh, param_specs=specs))
    got = flat(aggregate_streamed(payloads, like, rule=rule, mesh=mesh, param_specs=specs))
    assert_same_bits(got, want)
    for name in ("layers/mlp/w_up", "embed/embedding", "final_norm/scale"):  # born sharded
        assert got[name].sharding.spec == want[name].sharding.spec == specs[name], name


def test_streamed_errors_and_missing_parameters_match_the_default():
    payloads = peer_payloads(2, seed=0)
    like = {"w": (8, 8), **{name: shape for name, (shape, _) in SPECS.items()}}
    got = aggregate_streamed(payloads, like)
    assert np.all(np.asarray(got["w"]) == 0) and got["w"].shape == (8, 8)  # no peer carries it
    with pytest.raises(AggregationError, match="lack parameter head/w"):
        aggregate_streamed([payloads[0], {k: v for k, v in payloads[1].items() if k != "head/w"}],
                           like)
    with pytest.raises(AggregationError, match="at least one payload"):
        aggregate_streamed([], like)
    with pytest.raises(AggregationError, match="unknown aggregation rule"):
        aggregate_streamed(payloads, like, rule="trimmed")


def test_streamed_equals_the_default_at_a_150m_mlp_shape():
    """At (1024, 2816) (a 150m MLP weight's layer) XLA's CPU reduction of the norms summed in
    another order when the decode was fused into it (1 ulp in a clipped peer's norm): the
    norms must see the decoded values materialized, as inside the stacked core."""
    from templar_jax.sparseloco import aggregate_tensor
    from templar_jax.sparseloco.streamed import aggregate_tensor_streamed
    from templar_jax.wire import expected_table
    from templar_jax.wire.synthetic import random_tensor_payload

    shape = (1024, 2816)
    table = expected_table({"w": shape}, batch_dims={"w": 0})
    payloads = [{"w": random_tensor_payload(np.random.default_rng([3, i]), table["w"])} for i in range(5)]
    want = np.asarray(aggregate_tensor([p["w"] for p in payloads], shape))
    got = np.asarray(aggregate_tensor_streamed(payloads, "w", shape))
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
