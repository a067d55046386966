"""SPEC 2.2-2.3 on chunked arrays: per-chunk top-k, the 2-bit quantizer, decode, scatter.

Every function works on [B, C, ...] arrays, B = independent reference tensors (the stacked
`layers` axis, or 1). Quantizer statistics are per reference tensor, i.e. reduced over the
chunk and k axes. `axis_names` names the mesh axes over which a tensor's chunks are spread when
this runs on local shards under `shard_map`: every cross-chunk reduction is then completed with a
`psum` over them (only scalars per tensor travel), so no device needs the whole tensor.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from jax import lax


def _psum(x, axis_names: Sequence[str]):
    return lax.psum(x, tuple(axis_names)) if axis_names else x


def select_topk(chunks_BxCxS, k: int):
    """Top-k by |x| per chunk -> (idx_BxCxK int32 sorted ascending, values_BxCxK).

    `lax.top_k` orders equal magnitudes by lower index first (XLA's TopK is index-stable; pinned
    by tests against a stable argsort), which is the reference's tie rule. Indices are then sorted
    ascending so the payload is canonical and Elias-Fano friendly.
    """
    _, idx = lax.top_k(jnp.abs(chunks_BxCxS), k)
    idx = jnp.sort(idx.astype(jnp.int32), axis=-1)
    return idx, jnp.take_along_axis(chunks_BxCxS, idx, axis=-1)


def quantize(v_BxCxK, *, bins: int = 4, sigma_range: float = 6.0, axis_names: Sequence[str] = ()):
    """2-bit (bins-level) quantizer of SPEC 2.3, statistics per reference tensor.

    shift = mean(v); c = v - shift; std = ||c|| / sqrt(n - 1); scale = sigma_range * std / bins
    (1 when 0/NaN/Inf); q = clip(round_half_even(c / scale + bins/2), 0, bins-1);
    lut[b] = mean(c | q == b) (0 if empty). Two passes (mean, then centred sum) for accuracy.
    Returns (codes uint8 [B,C,K], shift [B], scale [B], lut [B, bins]), all float32.
    """
    v = v_BxCxK.astype(jnp.float32)
    n_local = v.shape[1] * v.shape[2]
    count = _psum(jnp.float32(n_local), axis_names)
    shift = _psum(jnp.sum(v, axis=(1, 2)), axis_names) / count
    c = v - shift[:, None, None]
    sq = _psum(jnp.sum(c * c, axis=(1, 2)), axis_names)
    std = jnp.sqrt(sq / (count - 1.0))
    scale = sigma_range * std / bins
    scale = jnp.where(jnp.isfinite(scale) & (scale != 0), scale, jnp.float32(1.0))
    q = jnp.clip(jnp.round(c / scale[:, None, None] + bins / 2), 0, bins - 1).astype(jnp.uint8)
    onehot_BxCxKxN = q[..., None] == jnp.arange(bins, dtype=jnp.uint8)
    bin_sum = _psum(jnp.sum(jnp.where(onehot_BxCxKxN, c[..., None], 0.0), axis=(1, 2)), axis_names)
    bin_cnt = _psum(jnp.sum(onehot_BxCxKxN, axis=(1, 2), dtype=jnp.float32), axis_names)
    lut = jnp.where(bin_cnt > 0, bin_sum / jnp.maximum(bin_cnt, 1.0), 0.0)
    return q, shift, scale, lut


def dequantize(codes_BxCxK, shift_B, lut_BxN):
    """value = lut[code] + shift (float32), per reference tensor."""
    codes = jnp.asarray(codes_BxCxK).astype(jnp.int32)
    b = codes.shape[0]
    lut = jnp.asarray(lut_BxN, jnp.float32)
    vals = jnp.take_along_axis(lut, codes.reshape(b, -1), axis=1).reshape(codes.shape)
    return vals + jnp.asarray(shift_B, jnp.float32).reshape(b, 1, 1)


def scatter_add(base_BxCxS, idx_BxCxK, vals_BxCxK, unique_indices: bool = False):
    """base[b, c, idx[b, c, j]] += vals[b, c, j] (duplicates accumulate; `unique_indices`
    promises there are none, which lets a GPU skip atomics)."""
    b, c, _ = idx_BxCxK.shape
    rows_b = jnp.arange(b)[:, None, None]
    rows_c = jnp.arange(c)[None, :, None]
    return base_BxCxS.at[rows_b, rows_c, idx_BxCxK].add(vals_BxCxK, mode="drop",
                                                         unique_indices=unique_indices)


def scatter_set(base_BxCxS, idx_BxCxK, vals_BxCxK):
    """base[b, c, idx[b, c, j]] = vals[b, c, j]."""
    b, c, _ = idx_BxCxK.shape
    rows_b = jnp.arange(b)[:, None, None]
    rows_c = jnp.arange(c)[None, :, None]
    return base_BxCxS.at[rows_b, rows_c, idx_BxCxK].set(vals_BxCxK, mode="drop")


def sumsq(v_BxCxK, axis_names: Sequence[str] = ()):
    """Per reference tensor sum of squares [B] (complete across shards)."""
    v = v_BxCxK.astype(jnp.float32)
    return _psum(jnp.sum(v * v, axis=(1, 2)), axis_names)


def ef_compress_chunks(e_BxCxS, k: int, *, bins: int, sigma_range: float, axis_names=()):
    """Select, quantize and form the residual on chunked error-feedback buffers.

    Returns (idx, codes, shift, scale, lut, residual_BxCxS) where residual = e - decode(payload):
    unchanged where not selected, v - v_hat at the selected coordinates.
    """
    idx, v = select_topk(e_BxCxS, k)
    codes, shift, scale, lut = quantize(v, bins=bins, sigma_range=sigma_range, axis_names=axis_names)
    v_hat = dequantize(codes, shift, lut)
    residual = scatter_set(e_BxCxS, idx, (v.astype(jnp.float32) - v_hat).astype(e_BxCxS.dtype))
    return idx, codes, shift, scale, lut, residual

