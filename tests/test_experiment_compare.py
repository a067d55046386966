"""The experiment harness and `templar-jax experiment compare` end to end (tiny settings)."""

import json

import numpy as np
import pytest

from templar_jax.cli import main
from templar_jax.experiment.config import SimConfig
from templar_jax.experiment.data import ReplicaData
from templar_jax.experiment.seeds import compare_seeds, spread, summarize


def test_synthetic_replicas_get_distinct_reproducible_batches():
    a = ReplicaData("synthetic", replicas=3, batch=2, seq_len=16, vocab_size=64, n_eval=4, seed=1)
    b = ReplicaData("synthetic", replicas=3, batch=2, seq_len=16, vocab_size=64, n_eval=4, seed=1)
    s0 = a.stacked(0)
    assert s0.shape == (3, 2, 16) and s0.dtype == np.uint32
    np.testing.assert_array_equal(s0, b.stacked(0))
    assert not np.array_equal(s0[0], s0[1])
    np.testing.assert_array_equal(a.stacked(0), s0)  # re-reading a step returns the same batch
    with pytest.raises(ValueError, match="unknown data source"):
        ReplicaData("nope", replicas=1, batch=1, seq_len=4, vocab_size=8)


@pytest.mark.slow
def test_experiment_compare_cli_writes_results(tmp_path):
    rc = main(["experiment", "compare", "--replicas", "2", "--inner-steps", "2", "--rounds", "2",
               "--batch", "2", "--inner-lr", "3e-3", "--warmup", "1", "--data", "synthetic",
               "--out", str(tmp_path)])
    assert rc == 0
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    for m in ("adamw", "diloco", "sparseloco"):  # one plot per method, every seed's curve
        assert (tmp_path / f"compare-{m}.png").stat().st_size > 10_000
    assert summary["seeds"] == [0] and len(summary["runs"]) == 1
    out = summary["runs"][0]
    res = out["results"]
    assert set(res) == {"adamw", "diloco", "sparseloco"}
    for m, r in res.items():
        assert len(r["heldout_loss"]) == 2 and np.all(np.isfinite(r["heldout_loss"]))
        assert r["final_loss"] < out["initial_loss"], m  # every method learns something
    n = out["params"]
    assert res["diloco"]["bytes_per_replica_per_round"] == 4 * n
    assert res["adamw"]["bytes_per_replica_per_round"] == 4 * n * 2  # one gradient per step
    # 1.56% density, 2-bit codes, Elias-Fano indices through the real wire encoder.
    assert res["sparseloco"]["ratio_vs_fp32"] > 100
    assert res["sparseloco"]["bits_per_param"] < 0.32


def _fake_run(finals: dict[str, list[float]]) -> dict:
    return {"results": {m: {"heldout_loss": c, "final_loss": c[-1], "rounds": [1, 2],
                            "tokens": [10, 20], "bytes_per_replica_per_round": 100,
                            "bits_per_param": 0.5, "ratio_vs_fp32": 64.0, "seconds": 1.0}
                        for m, c in finals.items()}}


def test_seed_summary_gives_mean_spread_curves_and_paired_gaps():
    runs = [_fake_run({"a": [5.0, 4.0], "b": [5.0, 4.5]}),
            _fake_run({"a": [6.0, 5.0], "b": [6.0, 5.2]})]
    s = summarize(runs)
    assert s["a"]["final"] == {"mean": 4.5, "std": pytest.approx(0.5 ** 0.5), "min": 4.0,
                               "max": 5.0, "n": 2}
    assert s["a"]["curve_mean"] == [5.5, 4.5]
    assert s["a"]["curve_std"] == pytest.approx([0.5 ** 0.5, 0.5 ** 0.5])
    # paired per seed: a - b = -0.5 and -0.2
    assert s["a"]["gap_vs"]["b"]["mean"] == pytest.approx(-0.35)
    assert s["b"]["gap_vs"]["a"]["max"] == pytest.approx(0.5)
    assert s["a"]["bytes_per_replica_per_round"] == 100 and s["a"]["tokens"] == [10, 20]
    assert spread([3.0])["std"] == 0.0  # one seed: no spread, not NaN


def test_compare_seeds_rejects_no_or_repeated_seeds():
    with pytest.raises(ValueError, match="at least one seed"):
        compare_seeds(SimConfig(), [])
    with pytest.raises(ValueError, match="repeated seed"):
        compare_seeds(SimConfig(), [1, 1])


def test_small_preset_sits_between_tiny_and_150m():
    from templar_jax.model import load_model_config, param_count

    small = load_model_config("small")
    assert param_count(small) == 2_361_024
    assert param_count(load_model_config("tiny")) < param_count(small) < param_count(load_model_config("150m"))
    assert small.vocab_size == 4096 and small.max_seq_len == 128  # the bundled corpus's BPE and rows


def test_reference_alpha_in_ef_equals_alpha_squared_without_it():
    """The compressor is positively homogeneous (top-k picks the same indices, the 2-bit
    quantizer's shift, scale and lut all scale), so the reference's `e = beta*e + alpha*delta`
    followed by `theta -= alpha*agg` is this project's form at alpha**2 (docs/convergence.md)."""
    import jax
    import jax.numpy as jnp

    from templar_jax.sparseloco import aggregate, sparseloco

    key = jax.random.PRNGKey(0)
    delta = {"w": jax.random.normal(key, (128, 256)), "b": jax.random.normal(key, (64,))}
    tx = sparseloco(beta=0.95, topk=64, chunk=64)
    alpha = 0.4
    scaled, plain = tx.init(delta), tx.init(delta)
    for step in range(3):  # several rounds, so the error feedback's residual takes part
        d = jax.tree.map(lambda x: x * (1.0 + step), delta)
        p_ref, scaled = tx.update(jax.tree.map(lambda x: alpha * x, d), scaled)
        p_ours, plain = tx.update(d, plain)
        ref = aggregate([p_ref], delta)
        ours = aggregate([p_ours], delta)
        for name in ("w", "b"):
            np.testing.assert_allclose(alpha * ref[name], alpha ** 2 * ours[name], rtol=1e-5,
                                       atol=1e-7)
            assert float(jnp.abs(ours[name]).max()) > 0
