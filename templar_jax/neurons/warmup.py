"""Compile every program a run's neurons use, once, into the persistent XLA cache.

The demo runs this in one process before starting the network, so the miners and the validator
(same programs, same flags) load them from disk instead of each compiling them on shared cores.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import jax
import numpy as np

from templar_jax.neurons.datasets import open_datasets
from templar_jax.neurons.mesh import neuron_mesh
from templar_jax.neurons.miner import compressor, inner_trainer
from templar_jax.config import load_run_config
from templar_jax.gauntlet.stale_copy import remember_updates
from templar_jax.sparseloco import compress_dense, densify, median_norms, rebase, topk_rows_of
from templar_jax.sparseloco.payload import peer_bucket
from templar_jax.sparseloco.tree import flatten
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.xla_cache import enable_compilation_cache

log = logging.getLogger(__name__)


def warm_up(settings, *, max_peers: int, eval_batches: tuple[int, ...]) -> float:
    t0 = time.time()
    data = open_datasets(settings.data)
    model = GlobalModel(settings, pad_id=data.pad_id, mesh=neuron_mesh(settings.mesh.spec))
    params = model.init_params()
    trainer = inner_trainer(model)
    opt = trainer.init(params)
    batch = data.train.samples(np.arange(settings.inner.batch))
    trained, opt, _ = trainer.run(params, opt, [batch])
    tx = compressor(model)
    ef = tx.init(params)
    delta = jax.tree.map(lambda a, b: a - b, params, trained)
    if settings.sparseloco.overlap:  # the miner's landing of a late outer step
        jax.block_until_ready(rebase(params, trained, params))
    for null_round in (True, False):
        payload, ef = tx.update(delta, ef, null_round=null_round)
    meta = {"window": 0, "uid": 0, "version": settings.run.version}
    data_b = model.codec.encode(payload, meta)
    decoded = model.decode_payload(data_b, window=0, uid=0)
    r = 1
    while r <= peer_bucket(max_peers):
        jax.block_until_ready(model.outer_step(params, [decoded] * r))
        r *= 2
    # the validator's stale-copy check (the aggregate's top-k at sampled chunks) and the demo's free
    # rider (an aggregate compressed as a peer would)
    slc, agg = settings.sparseloco, flatten(model.aggregate([decoded], params))
    remember_updates(0, {0: decoded}, settings.validator, seed=0, aggregate_rows=lambda rows: topk_rows_of(
        agg, rows, topk=slc.topk, chunk=slc.chunk, batch_dims=model.batch_dims))
    compress_dense(agg, topk=slc.topk, chunk=slc.chunk, batch_dims=model.batch_dims)
    update = densify(decoded, params, clip_norm=median_norms([decoded]), chunk=settings.sparseloco.chunk,
                     batch_dims=model.batch_dims)
    jax.block_until_ready(jax.tree.map(lambda p, u: p - 0.1 * u, params, update))
    for n in eval_batches:
        model.loss(params, data.train.samples(np.arange(n)))
    return time.time() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--max-peers", type=int, default=32)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    enable_compilation_cache()
    settings = load_run_config(args.config, args.overrides)
    seconds = warm_up(settings, max_peers=args.max_peers, eval_batches=(settings.validator.eval_sequences, 32))
    log.info("compiled the run's programs in %.1f s", seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
