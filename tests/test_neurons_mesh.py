"""A neuron's model on a device mesh (8 fake CPU devices) computes what the single-device
neuron computes: the inner steps, the compressed payload and the outer step, and the params
stay sharded throughout."""

import jax
import numpy as np
from jax.sharding import NamedSharding

from templar_jax.neurons.datasets import open_datasets
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.neurons.mesh import neuron_mesh
from templar_jax.neurons.miner import inner_trainer
from templar_jax.config import load_run_config
from templar_jax.sparseloco import sparseloco


def _close(a, b, **kw):
    for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))):
        np.testing.assert_allclose(x, y, **kw)


def test_mesh_spec_resolution():
    assert neuron_mesh("auto", jax.devices()[:1]) is None
    assert dict(neuron_mesh("auto").shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    assert dict(neuron_mesh("data=2,fsdp=2,tensor=2").shape) == {"data": 2, "fsdp": 2, "tensor": 2}


def test_sharded_neuron_matches_single_device():
    settings = load_run_config("demo", ["model.overrides={dtype: float32}", "inner.steps=2"])
    data = open_datasets(settings.data)
    plain = GlobalModel(settings, pad_id=data.pad_id)
    sharded = GlobalModel(settings, pad_id=data.pad_id, mesh=neuron_mesh("data=2,fsdp=2,tensor=2"))
    batches = [data.train.samples(np.arange(8) + 8 * i) for i in range(2)]
    out = {}
    for name, model in (("plain", plain), ("sharded", sharded)):
        trainer = inner_trainer(model)
        theta0 = model.init_params()
        trained, _, losses = trainer.run(theta0, trainer.init(theta0), batches)
        out[name] = (model, theta0, trained, losses)
    _, theta_p, trained_p, losses_p = out["plain"]
    model_s, theta_s, trained_s, losses_s = out["sharded"]
    assert all(isinstance(x.sharding, NamedSharding) for x in jax.tree.leaves(trained_s))
    _close(theta_p, theta_s, rtol=0, atol=0)  # same initial params
    np.testing.assert_allclose(losses_p, losses_s, rtol=1e-5)
    # Adam divides by sqrt(v): where a gradient is ~0, fp32 summation-order noise between the
    # sharded and unsharded programs moves a parameter by up to ~1e-5 (one step is lr = 3e-3).
    _close(trained_p, trained_s, rtol=1e-4, atol=3e-5)

    # the same pseudo-gradient compresses and steps identically on the mesh
    delta_p = jax.tree.map(lambda a, b: a - b, theta_p, trained_p)
    delta_s = jax.device_put(delta_p, model_s.shardings)
    tx_p = sparseloco(batch_dims=plain.batch_dims)
    tx_s = sparseloco(batch_dims=model_s.batch_dims, mesh=model_s.mesh)
    pay_p, _ = tx_p.update(delta_p, tx_p.init(theta_p))
    pay_s, _ = tx_s.update(delta_s, tx_s.init(theta_s))
    for name in pay_p:
        np.testing.assert_array_equal(np.asarray(pay_p[name].idx), np.asarray(pay_s[name].idx))
    next_p = plain.outer_step(theta_p, [pay_p, pay_p])
    next_s = model_s.outer_step(theta_s, [jax.device_get(pay_s)] * 2)
    assert all(isinstance(x.sharding, NamedSharding) for x in jax.tree.leaves(next_s))
    _close(next_p, next_s, rtol=1e-6, atol=1e-7)
