"""SPEC 2.4's aggregation rule on peers' chunked values: the pure core that every aggregation
path (pure JAX, the Pallas kernels, per shard) shares.

Rule "median_clip" (production), per reference tensor b:
    n_r   = ||v_r||                                  (L2 norm of peer r's dequantized values)
    m     = lower median of n_r over the valid peers
    v_r  <- v_r * min(1, m / (n_r + 1e-8))           (clip each peer to the median norm)
    out_x = sum_r v_r[x] / #{r : r selected x}       (per-coordinate mean; 0 where no peer did)
Rule "mean" (the paper): out_x = sum_r v_r[x] / R_valid.
A peer counts for reference tensor b only when its norm there is finite: a peer whose values
overflow (inf, NaN, or squares that sum past float32) is dropped from that tensor, so it can
never cancel the honest peers' update (the wire decoder rejects such payloads first; this is
the core's own guard). A reference tensor whose result still has a non-finite value (e.g. no
peer left for the "mean" rule's divisor) is zeroed (skipped). Arrays are
[R, B, C, K] (peers, reference tensors, chunks, values per chunk); R may be padded (`valid_R`
marks the real peers). Under shard_map, `axis_names` completes the per-peer norms and the
non-finite check across the shards of one reference tensor.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.chunking import from_chunks
from templar_jax.sparseloco.geometry import ChunkGeometry
from templar_jax.sparseloco.payload import TensorPayload

RULES = ("median_clip", "mean")
CLIP_EPS = 1e-8


class AggregationError(ValueError):
    """Bad aggregation input (unknown rule, no peers, payload/parameter mismatch)."""


def check_rule(rule: str) -> None:
    if rule not in RULES:
        raise AggregationError(f"unknown aggregation rule {rule!r}; expected one of {RULES}")


def lower_median(norms_RxB, n_valid=None):
    """Lower median over the first axis; with `n_valid` (a scalar or one count per column),
    over the first n_valid rows after sorting (invalid peers carry +inf, so they sort last)."""
    r = norms_RxB.shape[0]
    if n_valid is None:
        return jnp.sort(norms_RxB, axis=0)[(r - 1) // 2]
    pos = jnp.broadcast_to((jnp.maximum(n_valid, 1) - 1) // 2, norms_RxB.shape[1:])
    return jnp.take_along_axis(jnp.sort(norms_RxB, axis=0), pos[None], axis=0)[0]


def peers_upto(valid_R):
    """1 + the index of the last valid peer (0 if none): loops over peers stop there, so the
    padding after the real peers costs nothing."""
    return jnp.max(jnp.where(valid_R > 0, jnp.arange(1, valid_R.shape[0] + 1), 0))


def peer_norms(vals_RxBxCxK, axis_names: Sequence[str] = ()):
    """L2 norm of each peer's decoded values per reference tensor [R, B] (complete across
    shards)."""
    return jnp.sqrt(jax.vmap(lambda v: codec.sumsq(v, axis_names))(vals_RxBxCxK))


def finite_peers(norms_RxB, valid_R):
    """(valid_RxB float32, n_valid_B int32): peer r counts for reference tensor b when it is
    valid and its norm there is finite. A non-finite norm (an inf or NaN value, or a sum of
    squares past float32) would make its clip factor 0 and inf * 0 = NaN, which skips the
    tensor for every peer; dropping the peer keeps the others' result bit-identical."""
    ok_RxB = (valid_R[:, None] > 0) & jnp.isfinite(norms_RxB)
    return ok_RxB.astype(jnp.float32), jnp.sum(ok_RxB, axis=0, dtype=jnp.int32)


def clip_factors(norms_RxB, valid_RxB, n_valid_B):
    """min(1, m / (n_r + eps)) per peer and reference tensor [R, B]; m is the lower median of
    the valid peers' norms (invalid peers' norms are replaced by +inf, so they never count)."""
    m_B = lower_median(jnp.where(valid_RxB > 0, norms_RxB, jnp.inf), n_valid_B)
    return jnp.minimum(1.0, m_B / (norms_RxB + CLIP_EPS))


def drop_invalid(idx_RxBxCxK, valid_RxB, chunk_size: int):
    """Invalid and padding peers' indices (per reference tensor) moved past the chunk, so every
    scatter (mode="drop") and every kernel drops them whatever values they hold: no +0.0 adds
    (on a GPU, atomics piling onto one address per chunk) and no NaN from an invalid peer."""
    return jnp.where(valid_RxB[:, :, None, None] > 0, idx_RxBxCxK, chunk_size)


def peer_sums(zeros_BxCxS, idx_RxBxCxK, vals_RxBxCxK, ordered_upto=None):
    """zeros + every peer's values scattered in (duplicates accumulate in peer order 0..R-1 on
    CPU). Default: one scatter with the peers on the K axis ([B, C, R*K]); a GPU's scatter-add
    then adds colliding peers with atomics, in any order. With `ordered_upto` (a traced peer
    count): one scatter per peer 0..ordered_upto-1, each with unique indices, so the order is
    fixed on every device (a candidate for deterministic GPU aggregation, bench/compress.py)."""
    r, b, c, k = idx_RxBxCxK.shape
    if ordered_upto is None:
        idx = jnp.moveaxis(idx_RxBxCxK, 0, 2).reshape(b, c, r * k)
        vals = jnp.moveaxis(vals_RxBxCxK, 0, 2).reshape(b, c, r * k)
        return codec.scatter_add(zeros_BxCxS, idx, vals)

    def add_peer(i, acc):
        return codec.scatter_add(acc, idx_RxBxCxK[i], vals_RxBxCxK[i], unique_indices=True)

    return jax.lax.fori_loop(0, ordered_upto, add_peer, zeros_BxCxS)


def aggregate_chunks(idx_RxBxCxK, vals_RxBxCxK, valid_R, *, chunk_size: int, rule: str,
                     axis_names: Sequence[str] = (), ordered: bool = False):
    """The rule on chunked, decoded peer values -> dense chunks [B, C, chunk_size].

    `ordered`: add the peers one scatter at a time up to the last valid one (`peer_sums`).
    """
    r, b, c, k = idx_RxBxCxK.shape
    norms_RxB = peer_norms(vals_RxBxCxK, axis_names)
    factor_RxB, valid_RxB, n_valid_B = peer_factors(norms_RxB, valid_R, rule)
    upto = peers_upto(valid_R) if ordered else None
    idx_RxBxCxK = drop_invalid(idx_RxBxCxK, valid_RxB, chunk_size)
    zeros = jnp.zeros((b, c, chunk_size), jnp.float32)
    if rule == "mean":
        sums = peer_sums(zeros, idx_RxBxCxK, vals_RxBxCxK, upto)
        return finish_sums(sums, None, n_valid_B, rule=rule, axis_names=axis_names)
    ones = jnp.ones(vals_RxBxCxK.shape, jnp.float32)
    sums = peer_sums(zeros, idx_RxBxCxK, vals_RxBxCxK * factor_RxB[:, :, None, None], upto)
    counts = peer_sums(zeros, idx_RxBxCxK, ones, upto)
    return finish_sums(sums, counts, n_valid_B, rule=rule, axis_names=axis_names)


def peer_factors(norms_RxB, valid_R, rule: str):
    """(clip factor, valid, valid count): each peer's factor and validity per reference tensor
    [R, B] and the valid peers per reference tensor [B] ("mean" scales nothing)."""
    valid_RxB, n_valid_B = finite_peers(norms_RxB, valid_R)
    if rule == "mean":
        return jnp.ones_like(norms_RxB), valid_RxB, n_valid_B
    return clip_factors(norms_RxB, valid_RxB, n_valid_B), valid_RxB, n_valid_B


def finish_sums(sums_BxCxS, counts_BxCxS, n_valid_B, *, rule: str,
                axis_names: Sequence[str] = ()):
    """The rule's normalization of the peers' summed values -> dense chunks [B, C, S]: the mean
    over the valid peers ("mean") or over the peers that selected each coordinate (their
    `counts`; "median_clip"), then reference tensors with a non-finite value zeroed."""
    if rule == "mean":
        dense = sums_BxCxS / n_valid_B.astype(jnp.float32)[:, None, None]
    else:
        dense = jnp.where(counts_BxCxS > 0, sums_BxCxS / jnp.maximum(counts_BxCxS, 1.0), 0.0)
    bad_B = jnp.sum(~jnp.isfinite(dense), axis=(1, 2), dtype=jnp.float32)
    bad_B = jax.lax.psum(bad_B, tuple(axis_names)) if axis_names else bad_B
    return jnp.where((bad_B == 0)[:, None, None], dense, 0.0)


def add_one_peer(sums_BxCxS, counts_BxCxS, flat: TensorPayload, factor_B, valid_B, *,
                 chunk_size: int, rule: str):
    """One peer's values scaled by its clip factor and scattered into the running sums (and a 1
    per selected coordinate into the counts; "median_clip" only): the same adds, in the same
    order per coordinate, as `peer_sums` over peers 0..R-1 when called for each peer in turn.
    A peer invalid for reference tensor b (`valid_B` 0) adds nothing there."""
    vals = codec.dequantize(flat.codes, flat.shift, flat.lut)
    idx = drop_invalid(flat.idx[None], valid_B[None], chunk_size)[0]
    if rule == "mean":
        return codec.scatter_add(sums_BxCxS, idx, vals), counts_BxCxS
    sums = codec.scatter_add(sums_BxCxS, idx, vals * factor_B[:, None, None])
    return sums, codec.scatter_add(counts_BxCxS, idx, jnp.ones(vals.shape, jnp.float32))


def aggregate_block(flat_R: TensorPayload, valid_R, *, geom: ChunkGeometry, rule: str,
                    axis_names: Sequence[str] = (), ordered: bool = False):
    """The pure aggregation core: peers' payload arrays ([R, B, C, K] codes and indices, [R, B]
    shift, [R, B, N] lut) of one block of chunks -> dense [B, *block shape] in the tensor's
    layout. The Pallas core (`kernels.aggregate.aggregate_block_pallas`) has this contract."""
    vals = jax.vmap(codec.dequantize)(flat_R.codes, flat_R.shift, flat_R.lut)
    dense = aggregate_chunks(flat_R.idx, vals, valid_R, chunk_size=geom.chunk_size, rule=rule,
                             axis_names=axis_names, ordered=ordered)
    return from_chunks(dense, geom)
