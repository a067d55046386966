"""Scenarios from the project's own sources of truth: the run config (timing rules, inner steps,
batch, SparseLoCo settings) and the model preset's parameter table (exact payload bytes via the
wire size tables)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from templar_jax.config import RunConfig
from templar_jax.netsim.scenario import Links, Overlap, Scenario, Timing, Work


@lru_cache(maxsize=16)
def payload_size(model: str, index_coding: str, chunk: int, topk: int) -> tuple[int, int]:
    """(params, encoded bytes per peer per window) for a model preset, from the wire size tables."""
    from templar_jax.model import flat_param_shapes, load_model_config, param_batch_dims
    from templar_jax.wire import expected_table
    from templar_jax.wire.sizes import size_report

    cfg = load_model_config(model)
    table = expected_table(flat_param_shapes(cfg), batch_dims=param_batch_dims(cfg))
    meta = {"window": 0, "uid": 0, "global_step": 0, "sample_digest": "0" * 32, "sample_count": 0,
            "version": "v"}
    rep = size_report(table, meta, index_coding=index_coding, chunk=chunk, topk=topk)
    return rep.params, rep.encoded_bytes


def work_from_config(cfg: RunConfig, *, inner_steps: int | None = None) -> Work:
    sl = cfg.sparseloco
    params, nbytes = payload_size(cfg.model.preset, sl.wire_index_coding, sl.chunk, sl.topk)
    return Work(model=cfg.model.preset, params=params, payload_bytes=nbytes,
                tokens_per_step=cfg.inner.batch * cfg.data.seq_len,
                inner_steps=inner_steps or cfg.inner.steps,
                eval_tokens_per_uid=4 * cfg.validator.eval_sequences * cfg.data.seq_len,
                eval_uids=cfg.validator.eval_uids_per_window)


def timing_from_config(cfg: RunConfig) -> Timing:
    p = cfg.peers
    return Timing(window_s=cfg.run.blocks_per_window * cfg.run.block_time_s, upload_span_s=p.upload_window_s,
                  gather_timeout_s=p.gather_timeout_s, gather_peers=p.gather, reserve_peers=p.reserve,
                  refresh_windows=p.refresh_windows)


def scenario_from_config(cfg: RunConfig, *, links: Links, peers: int, windows: int, **kw) -> Scenario:
    """The run config's scenario; overlap defaults to what its miners do (sparseloco.overlap)."""
    inner_steps = kw.pop("inner_steps", None)
    kw.setdefault("overlap", Overlap.FULL if cfg.sparseloco.overlap else Overlap.NONE)
    return Scenario(work=work_from_config(cfg, inner_steps=inner_steps), timing=timing_from_config(cfg),
                    links=links, peers=peers, windows=windows, **kw)


def with_inner_steps(sc: Scenario, steps: int) -> Scenario:
    return dataclasses.replace(sc, work=dataclasses.replace(sc.work, inner_steps=steps))
