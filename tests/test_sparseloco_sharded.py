"""Per-shard compression on 8 fake CPU devices (mesh data=2, fsdp=2, tensor=2).

Checks that the compiled program moves no parameter-sized data between devices (only
payload-sized reshuffles and scalar psums) and that sharded results equal unsharded ones.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from templar_jax.sparseloco import sparseloco
from templar_jax.sparseloco.compress import ef_compress_tensor
from templar_jax.sparseloco.geometry import tensor_geometry
from templar_jax.sparseloco.sharded import compress_on_shards, flat_chunk_spec, plan_shards

COLLECTIVE = re.compile(r"=\s*(\(?[^=]*?\)?)\s+(all-gather|all-to-all|collective-permute|all-reduce)"
                        r"(-start)?\(")
SHAPE_RE = re.compile(r"[a-z0-9]+\[([0-9,]*)\]")

CASES = {  # name: (global shape, spec, batch_ndim)
    "layers/mlp/w_up": ((2, 256, 512), P(None, "fsdp", "tensor"), 1),
    "embed/embedding": ((512, 256), P("tensor", "fsdp"), 0),
    "layers/attn_norm/scale": ((2, 256), P(None, "fsdp"), 1),
    "final_norm/scale": ((256,), P(("fsdp", "tensor")), 0),
}


@pytest.fixture(scope="module")
def mesh():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices; tests/conftest.py sets them")
    return jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)  # as model.sharding


def largest_collective(hlo: str) -> int:
    """Element count of the largest collective result in compiled HLO text."""
    biggest = 0
    for line in hlo.splitlines():
        m = COLLECTIVE.search(line)
        if not m:
            continue
        for dims in SHAPE_RE.findall(m.group(1)):
            biggest = max(biggest, int(np.prod([int(d) for d in dims.split(",") if d] or [1])))
    return biggest


def sharded_inputs(mesh, shape, spec, seed):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(shape).astype(np.float32)
    d = rng.standard_normal(shape).astype(np.float32)
    sh = NamedSharding(mesh, spec)
    return e, d, jax.device_put(e, sh), jax.device_put(d, sh)


@pytest.mark.parametrize("name", list(CASES))
def test_sharded_compress_moves_no_parameter_sized_data_and_matches(mesh, name):
    shape, spec, bd = CASES[name]
    plan = plan_shards(shape, spec, mesh, bd)
    assert plan is not None
    e, d, e_sh, d_sh = sharded_inputs(mesh, shape, spec, seed=len(name))
    fn = jax.jit(lambda a, b: compress_on_shards(ef_compress_tensor, a, b, plan=plan, mesh=mesh,
                                                 beta=0.95))
    hlo = fn.lower(e_sh, d_sh).compile().as_text()
    numel = int(np.prod(shape))
    assert largest_collective(hlo) <= numel // 32, "a parameter-sized collective was emitted"
    p, new_e = fn(e_sh, d_sh)
    assert new_e.sharding.spec == plan.spec and new_e.dtype == jnp.float32
    if len(plan.local_geom.tile) == 2:  # the flattened chunk axis stays sharded over the tensor axes
        rows = NamedSharding(mesh, flat_chunk_spec(plan))
        assert p.idx.sharding.is_equivalent_to(rows, p.idx.ndim), p.idx.sharding
        assert p.codes.sharding.is_equivalent_to(rows, p.codes.ndim), p.codes.sharding
    _, geom = tensor_geometry(shape, bd)
    pu, new_eu = jax.jit(lambda a, b: ef_compress_tensor(a, b, beta=0.95, geom=geom))(e, d)
    np.testing.assert_array_equal(np.asarray(p.idx), np.asarray(pu.idx))
    codes, codes_u = np.asarray(p.codes), np.asarray(pu.codes)
    assert np.mean(codes != codes_u) < 1e-3  # only float-summation-order ties may flip
    np.testing.assert_allclose(np.asarray(p.shift), np.asarray(pu.shift), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(p.scale), np.asarray(pu.scale), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(p.lut), np.asarray(pu.lut), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new_e), np.asarray(new_eu), rtol=1e-5, atol=1e-5)


def test_check_catches_a_full_gather(mesh):
    """Negative control: the same work without shard_map needs parameter-sized collectives
    (the chunk transpose crosses shard boundaries), so the HLO check above can fail."""
    shape, spec, bd = CASES["embed/embedding"]
    _, _, e_sh, d_sh = sharded_inputs(mesh, shape, spec, seed=0)
    _, geom = tensor_geometry(shape, bd)
    fn = jax.jit(lambda a, b: ef_compress_tensor(a, b, beta=0.95, geom=geom),
                 out_shardings=(None, NamedSharding(mesh, spec)))
    hlo = fn.lower(e_sh, d_sh).compile().as_text()
    assert largest_collective(hlo) > int(np.prod(shape)) // 32


def test_plan_rejects_shards_that_split_chunks(mesh):
    assert plan_shards((2, 192, 512), P(None, "fsdp", "tensor"), mesh, 1) is None  # 96 rows/shard
    assert plan_shards((2, 96, 512), P(None, "fsdp", "tensor"), mesh, 1) is not None  # tile 48
    assert plan_shards((50, 97), P(), mesh, 0) is not None  # replicated is always fine


def test_transformation_shards_state_and_matches_unsharded(mesh):
    rng = np.random.default_rng(11)
    params = {n: rng.standard_normal(s).astype(np.float32) for n, (s, _, _) in CASES.items()}
    on_mesh = {n: jax.device_put(v, NamedSharding(mesh, CASES[n][1])) for n, v in params.items()}
    tx = sparseloco(mesh=mesh)
    state = tx.init(on_mesh)
    for n, (_, spec, _) in CASES.items():
        assert state.error[n].sharding.spec == spec
    payload, state2 = tx.update(on_mesh, state)
    payload_u, state_u = sparseloco().update(params, sparseloco().init(params))
    for n in CASES:
        np.testing.assert_array_equal(np.asarray(payload[n].idx), np.asarray(payload_u[n].idx))
        assert state2.error[n].sharding.spec == CASES[n][1]
        np.testing.assert_allclose(np.asarray(state2.error[n]), np.asarray(state_u.error[n]),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["layers/mlp/w_up", "final_norm/scale"])
def test_sharded_aggregation_matches_unsharded(mesh, name):
    from templar_jax.sparseloco import aggregate_tensor, aggregate_tensor_sharded, compress_tensor
    from templar_jax.sparseloco.aggregate import aggregate_placed
    from templar_jax.sparseloco.sharded import place_payloads

    shape, spec, bd = CASES[name]
    rng = np.random.default_rng(5)
    common = rng.standard_normal(shape).astype(np.float32)
    payloads = [compress_tensor(common + rng.standard_normal(shape).astype(np.float32) * (i + 1),
                                batch_ndim=bd) for i in range(3)]
    plan = plan_shards(shape, spec, mesh, bd)
    got = aggregate_tensor_sharded(payloads, shape, plan=plan, mesh=mesh)
    assert got.sharding.spec == plan.spec
    want = np.asarray(aggregate_tensor(payloads, shape, batch_ndim=bd))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    placed, valid = place_payloads(payloads, shape, plan=plan, mesh=mesh)
    hlo = aggregate_placed.lower(placed, valid, plan=plan, mesh=mesh,
                                 rule="median_clip").compile().as_text()
    assert largest_collective(hlo) <= int(np.prod(shape)) // 32



def test_tree_aggregate_on_mesh_returns_sharded_update(mesh):
    from templar_jax.sparseloco import aggregate

    rng = np.random.default_rng(6)
    params = {n: rng.standard_normal(s).astype(np.float32) for n, (s, _, _) in CASES.items()}
    on_mesh = {n: jax.device_put(v, NamedSharding(mesh, CASES[n][1])) for n, v in params.items()}
    tx = sparseloco(mesh=mesh)
    payloads = [tx.update({n: v * (i + 1) for n, v in on_mesh.items()}, tx.init(on_mesh))[0]
                for i in range(2)]
    host = [{n: type(p)(*(np.asarray(a) for a in p)) for n, p in pl.items()} for pl in payloads]
    from templar_jax.sparseloco.tree import flatten

    agg = flatten(aggregate(host, on_mesh, mesh=mesh))  # aggregate returns the nested tree
    ref = flatten(aggregate(host, params))
    for n, (_, spec, _) in CASES.items():
        assert agg[n].sharding.spec == spec
        np.testing.assert_allclose(np.asarray(agg[n]), np.asarray(ref[n]), rtol=1e-5, atol=1e-6)
