"""Scenarios come from the real run config, size tables and protocol constants."""

from templar_jax.config import load_run_config
from templar_jax.model import flat_param_shapes, load_model_config, param_batch_dims
from templar_jax.netsim import build
from templar_jax.protocol.timing import GATHER_MARGIN_S, TRAIN_MARGIN_S
from templar_jax.wire import encode, expected_table
from templar_jax.wire.synthetic import random_payload


def test_payload_bytes_are_a_real_encode():
    import numpy as np

    cfg = load_model_config("tiny")
    table = expected_table(flat_param_shapes(cfg), batch_dims=param_batch_dims(cfg))
    meta = {"window": 0, "uid": 0, "global_step": 0, "sample_digest": "0" * 32, "sample_count": 0, "version": "v"}
    data = encode(random_payload(np.random.default_rng(0), table), meta, expected=table)
    params, nbytes = build.payload_size("tiny", "elias-fano", 64, 64)
    assert nbytes == len(data)
    assert params == sum(int(np.prod(s)) for s in flat_param_shapes(cfg).values())


def test_timing_and_work_from_the_run_config():
    cfg = load_run_config("covenant-72b")
    t = build.timing_from_config(cfg)
    assert (t.window_s, t.upload_span_s, t.gather_timeout_s, t.gather_peers, t.reserve_peers,
            t.refresh_windows) == (115 * 12, 70, 90, 20, 10, 2)
    assert (t.train_margin_s, t.gather_margin_s) == (TRAIN_MARGIN_S, GATHER_MARGIN_S)  # the neurons' clock's
    w = build.work_from_config(cfg)
    assert w.inner_steps == 30 and w.tokens_per_step == 192 * 2048
    assert 1.3e9 < w.payload_bytes < 1.45e9  # 0.156 bit/param at 70.6B params
    twelve = build.work_from_config(cfg.with_overrides(["sparseloco.index_coding=12bit"]))
    assert twelve.payload_bytes > 1.35 * w.payload_bytes
