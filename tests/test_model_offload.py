"""Host offload of a miner's state (model/offload.py, run config `offload`) on 8 fake CPU devices:
a window run with theta0, error feedback and AdamW state parked in pinned_host memory between
phases gives bit-identical params, error feedback and optimizer state, and the parked arrays
really are in pinned_host memory with their shardings kept."""

import jax
import numpy as np
import pytest

from templar_jax.config import load_run_config
from templar_jax.model.offload import (
    OffloadError, StateOffload, check_memory_kind, to_device, to_host, tree_memory_kinds,
)
from templar_jax.neurons.mesh import neuron_mesh
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.sparseloco import sparseloco
from templar_jax.train.inner import InnerTrainer

ALL_ON = ["offload.window_start_params=true", "offload.error_feedback=true", "offload.optimizer=true"]


@pytest.fixture(scope="module")
def setup():
    cfg = load_run_config("demo", ["inner.steps=2", "inner.warmup_steps=1"])
    model = GlobalModel(cfg, pad_id=None, mesh=neuron_mesh("fsdp=8"))
    trainer = InnerTrainer(model.cfg, cfg.inner, accum_steps=cfg.inner.accum_steps, pad_id=None, mesh=model.mesh)
    tx = sparseloco(beta=cfg.sparseloco.error_decay, topk=cfg.sparseloco.topk, chunk=cfg.sparseloco.chunk,
                    batch_dims=model.batch_dims, mesh=model.mesh)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, model.cfg.vocab_size, (cfg.inner.batch, cfg.data.seq_len)) for _ in range(2)]
    return cfg, model, trainer, tx, batches


def two_windows(setup, overrides, kinds_seen, windows=2):
    """The miner's window order (neurons/miner.py): train, park AdamW, delta, compress, park EF,
    outer step with the peer's payload, park theta0; twice. Records memory kinds between phases."""
    cfg, model, trainer, tx, batches = setup
    off = StateOffload.from_section(load_run_config("demo", overrides).offload, model.mesh.devices.flat)
    params = model.init_params()
    theta0, opt, ef = off.theta0(params), off.optimizer(trainer.init(params)), off.error_feedback(tx.init(params))
    for _ in range(windows):
        kinds_seen.append((tree_memory_kinds(theta0), tree_memory_kinds(opt), tree_memory_kinds(ef)))
        trained, opt, _ = trainer.run(theta0, to_device(opt), batches)
        opt = off.optimizer(opt)
        delta = jax.tree.map(lambda a, b: a - b, to_device(theta0), trained)
        payload, ef = tx.update(delta, to_device(ef))
        ef = off.error_feedback(ef)
        theta0 = off.theta0(model.outer_step(to_device(theta0), [payload]))
    kinds_seen.append((tree_memory_kinds(theta0), tree_memory_kinds(opt), tree_memory_kinds(ef)))
    return theta0, opt, ef


def test_offload_is_bit_identical_and_parks_in_pinned_host(setup):
    plain_kinds, host_kinds = [], []
    plain = two_windows(setup, [], plain_kinds)
    host = two_windows(setup, ALL_ON, host_kinds)
    assert all(k == ({"device"}, {"device"}, {"device"}) for k in plain_kinds)
    assert all(k == ({"pinned_host"},) * 3 for k in host_kinds)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(host)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # shardings are kept: only the memory kind differs
    p, h = jax.tree.leaves(plain[0]), jax.tree.leaves(host[0])
    assert all(x.sharding.with_memory_kind("pinned_host") == y.sharding for x, y in zip(p, h))


def test_each_option_parks_only_its_state(setup):
    kinds = []
    two_windows(setup, ["offload.error_feedback=true"], kinds, windows=1)
    assert kinds[-1] == ({"device"}, {"device"}, {"pinned_host"})


def test_a_missing_memory_kind_is_a_clear_error():
    x = to_host(jax.numpy.ones(4), "unpinned_host")
    assert tree_memory_kinds(x) == {"unpinned_host"} and tree_memory_kinds(to_device(x)) == {"device"}
    with pytest.raises(OffloadError, match="not a host memory kind"):
        check_memory_kind(jax.devices(), "device")

    class NoHostMemory:  # a backend that reports only its own memory
        platform, id = "neuron", 3

        def addressable_memories(self):
            return [type("M", (), {"kind": "device"})()]

    with pytest.raises(OffloadError, match="neuron device 3 has no 'pinned_host' memory"):
        StateOffload(theta0=True, devices=[NoHostMemory()])
    StateOffload(devices=[NoHostMemory()])  # nothing offloaded: nothing to check
