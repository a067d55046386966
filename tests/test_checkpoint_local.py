"""Local orbax checkpoints: round trip, resharding, keep-last-N, miner resume, crash safety."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from templar_jax.checkpoint.local import (
    CheckpointError,
    CheckpointMeta,
    LocalCheckpoints,
    abstract_target,
)
from templar_jax.checkpoint.resume import (
    TrainingState,
    restore_training_state,
    save_training_state,
)


def _mesh(n: int) -> Mesh:
    return Mesh(np.array(jax.devices()[:n]).reshape(n), ("fsdp",))


def _tree(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "embed": {"embedding": rng.standard_normal((32, 16), dtype=np.float32)},
        "layers": {"attn": {"wq": rng.standard_normal((2, 16, 24), dtype=np.float32)}},
        "final_norm": {"scale": rng.standard_normal((16,), dtype=np.float32)},
    }


# Sharded along the second-to-last... whichever axis is divisible; replicated for vectors.
_SPECS = {"embed": {"embedding": P("fsdp", None)},
          "layers": {"attn": {"wq": P(None, "fsdp", None)}},
          "final_norm": {"scale": P()}}


def _shardings(mesh: Mesh) -> dict:
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), _SPECS,
                        is_leaf=lambda x: isinstance(x, P))


def _meta(window: int) -> CheckpointMeta:
    return CheckpointMeta(window=window, global_step=30 * window, version="test-1",
                          extra={"note": "hi"})


def _assert_tree_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_on_8_devices_restore_on_4_and_1(tmp_path):
    host = _tree()
    params8 = jax.tree.map(jax.device_put, host, _shardings(_mesh(8)))
    assert len(params8["embed"]["embedding"].sharding.device_set) == 8
    with LocalCheckpoints(tmp_path / "ck") as ckpts:
        assert ckpts.save(7, params8, meta=_meta(7))
        ckpts.wait()
        for n in (4, 1):
            target = abstract_target(host, _shardings(_mesh(n)))
            restored = ckpts.restore(target=target)
            assert restored.step == 7 and restored.meta == _meta(7)
            _assert_tree_equal(restored.params, host)
            emb = restored.params["embed"]["embedding"]
            assert emb.sharding == NamedSharding(_mesh(n), P("fsdp", None))
            assert len(emb.sharding.device_set) == n
        # No target: lands on the default device regardless of the saved layout.
        plain = ckpts.restore(7)
        _assert_tree_equal(plain.params, host)
        assert plain.params["embed"]["embedding"].sharding.device_set == {jax.devices()[0]}


def test_keep_last_n_and_errors(tmp_path):
    ckpts = LocalCheckpoints(tmp_path / "ck", max_to_keep=2)
    for window in (1, 2, 3):
        ckpts.save(window, _tree(window), meta=_meta(window))
    ckpts.wait()
    assert ckpts.all_steps() == [2, 3]
    assert ckpts.latest_step() == 3
    _assert_tree_equal(ckpts.restore(2).params, _tree(2))
    with pytest.raises(CheckpointError, match="step 1"):
        ckpts.restore(1)
    with pytest.raises(CheckpointError, match="already exists"):
        ckpts.save(3, _tree(3), meta=_meta(3))
    with pytest.raises(CheckpointError, match="no extra items"):
        ckpts.restore(3, extras_target={"opt_state": None})
    ckpts.close()
    with pytest.raises(CheckpointError, match="no finished checkpoint"):
        LocalCheckpoints(tmp_path / "empty").restore()


def test_miner_resume_roundtrip_with_adamw_state(tmp_path):
    mesh = _mesh(8)
    params = jax.tree.map(jax.device_put, _tree(), _shardings(mesh))
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, b2=0.95))
    update = jax.jit(optimizer.update)  # one compile per layout instead of one per op
    opt_state = jax.jit(optimizer.init)(params)
    grads = jax.tree.map(lambda p: p * 0.5 + 1.0, params)
    for _ in range(3):  # non-trivial moments and a count of 3
        updates, opt_state = update(grads, opt_state, params)
        params = jax.jit(optax.apply_updates)(params, updates)
    error_feedback = {"layers/attn/wq": jnp.full((2, 16, 24), 0.25),
                      "final_norm/scale": jnp.arange(16, dtype=jnp.float32)}
    state = TrainingState(params, opt_state, error_feedback, window=41, schedule_step=1230)

    ckpts = LocalCheckpoints(tmp_path / "miner", max_to_keep=1)
    save_training_state(ckpts, state, version="run-A", wait=True)

    # Restore onto a 1-device layout, templates from eval_shape (no real arrays needed).
    one = NamedSharding(_mesh(1), P())
    params_like = abstract_target(jax.eval_shape(lambda: params), one)
    opt_like = abstract_target(jax.eval_shape(optimizer.init, params_like), one)
    ef_like = abstract_target(jax.eval_shape(lambda: error_feedback), one)
    back = restore_training_state(LocalCheckpoints(tmp_path / "miner"), params_like=params_like,
                                  opt_state_like=opt_like, error_feedback_like=ef_like,
                                  expect_version="run-A")
    assert back.window == 41 and back.schedule_step == 1230
    _assert_tree_equal(back.params, params)
    _assert_tree_equal(back.opt_state, opt_state)  # same NamedTuple structure and values
    _assert_tree_equal(back.error_feedback, error_feedback)
    assert int(back.opt_state[1][0].count) == 3
    # Training continues identically from the restored state (same layout on both sides:
    # a cross-shard reduction in the norm clip may round differently on another layout).
    on_one = lambda tree: jax.tree.map(lambda x: jax.device_put(x, one), tree)  # noqa: E731
    u1, _ = update(on_one(grads), on_one(opt_state), on_one(params))
    u2, _ = update(on_one(grads), back.opt_state, back.params)
    _assert_tree_equal(u1, u2)
    with pytest.raises(CheckpointError, match="run version"):
        restore_training_state(ckpts, params_like=params_like, opt_state_like=opt_like,
                               error_feedback_like=ef_like, expect_version="run-B")


_CRASH_CHILD = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    from templar_jax.checkpoint.local import CheckpointMeta, LocalCheckpoints
    ckpts = LocalCheckpoints(sys.argv[1])
    ckpts.save(1, {"w": jnp.full((64, 64), 1.0)}, meta=CheckpointMeta(1, 30, "v"))
    ckpts.wait()
    # ~256 MiB in 64 arrays: the background write takes far longer than the kill.
    big = {f"t{i}": jnp.full((1024 * 1024,), float(i)) for i in range(64)}
    ckpts.save(2, big, meta=CheckpointMeta(2, 60, "v"))
    print("STARTED", flush=True)
    ckpts.wait()
    print("FINISHED", flush=True)
""")


def test_sigkill_during_async_save_keeps_previous_checkpoint(tmp_path):
    directory = tmp_path / "ck"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_CHILD, str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "STARTED"
        proc.kill()
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -9
    names = sorted(os.listdir(directory))
    # Killed mid-way: step 2 exists only as orbax's temporary directory.
    assert "2" not in names and any(n.startswith("2.") and "tmp" in n for n in names), names

    ckpts = LocalCheckpoints(directory)
    assert ckpts.all_steps() == [1]
    restored = ckpts.restore()
    assert restored.step == 1 and restored.meta.global_step == 30
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.ones((64, 64)))
    # The half-written step does not block a fresh save of the same step.
    ckpts.save(2, {"w": jnp.zeros((2,))}, meta=CheckpointMeta(2, 60, "v"))
    ckpts.wait()
    assert ckpts.all_steps() == [1, 2]
    ckpts.close()


def test_stacked_layer_tensors_are_chunked_per_layer(tmp_path):
    import orbax.checkpoint as ocp

    mesh = _mesh(8)
    big = jax.device_put(jnp.ones((3, 1024, 2048)), NamedSharding(mesh, P(None, "fsdp", None)))
    tree = {"layers": {"mlp": {"w_up": big, "small": jnp.ones((3, 8))}}, "embed": jnp.ones((64, 8))}
    with LocalCheckpoints(tmp_path / "ck") as ckpts:
        ckpts.save(1, tree, meta=_meta(1))
        ckpts.wait()
        metadata = ocp.StandardCheckpointHandler().metadata(ckpts.step_dir(1) / "params").tree
        restored = ckpts.restore(1).params
    # One chunk per (layer, device shard): reading layer i touches only layer i's bytes.
    assert tuple(metadata["layers"]["mlp"]["w_up"].storage.chunk_shape) == (1, 128, 2048)
    assert tuple(metadata["layers"]["mlp"]["small"].storage.chunk_shape) == (3, 8)
    _assert_tree_equal(restored, tree)
