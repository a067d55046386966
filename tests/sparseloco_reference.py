"""Independent NumPy reference of SPEC sec. 2.1-2.4, written from the spec text only.

It does not import templar_jax. Ties are broken by a stable argsort of -|x| (lower index wins),
statistics are float64. Used by tests/test_sparseloco_*.py as the oracle.
"""

from __future__ import annotations

import numpy as np


def ref_split(n: int, target: int = 64) -> int:
    return max(d for d in range(1, min(n, target) + 1) if n % d == 0)


def ref_k(topk: int, chunk_size: int) -> int:
    k = max(min(topk, chunk_size), 2)
    k -= k % 2
    return min(k, chunk_size)


def ref_chunks(x: np.ndarray, chunk: int = 64) -> np.ndarray:
    """[num_chunks, chunk_size] following the tile loops literally (no reshape tricks)."""
    if x.ndim == 1:
        w = ref_split(x.shape[0], chunk)
        return np.stack([x[i:i + w] for i in range(0, x.shape[0], w)])
    rows, cols = x.shape
    h, w = ref_split(rows, chunk), ref_split(cols, chunk)
    out = []
    for y in range(rows // h):
        for xx in range(cols // w):
            out.append(x[y * h:(y + 1) * h, xx * w:(xx + 1) * w].reshape(-1))
    return np.stack(out)


def ref_unchunk(chunks: np.ndarray, shape, chunk: int = 64) -> np.ndarray:
    out = np.zeros(shape, chunks.dtype)
    if len(shape) == 1:
        return chunks.reshape(shape)
    rows, cols = shape
    h, w = ref_split(rows, chunk), ref_split(cols, chunk)
    i = 0
    for y in range(rows // h):
        for xx in range(cols // w):
            out[y * h:(y + 1) * h, xx * w:(xx + 1) * w] = chunks[i].reshape(h, w)
            i += 1
    return out


def ref_topk(chunks: np.ndarray, topk: int = 64):
    k = ref_k(topk, chunks.shape[1])
    idx = np.sort(np.argsort(-np.abs(chunks), axis=1, kind="stable")[:, :k], axis=1)
    return idx, np.take_along_axis(chunks, idx, axis=1)


def ref_quantize(v: np.ndarray, bins: int = 4, sigma_range: float = 6.0):
    """Returns (codes, shift, scale, lut, pre_round) with float64 statistics."""
    v64 = v.astype(np.float64)
    shift = v64.mean()
    c = v64 - shift
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.sqrt(np.sum(c * c) / (c.size - 1))
    scale = sigma_range * std / bins
    if not np.isfinite(scale) or scale == 0:
        scale = 1.0
    pre = c / scale + bins / 2
    codes = np.clip(np.round(pre), 0, bins - 1).astype(np.uint8)
    lut = np.array([c[codes == b].mean() if np.any(codes == b) else 0.0 for b in range(bins)])
    return codes, shift, scale, lut, pre


def ref_compress(x: np.ndarray, topk: int = 64, chunk: int = 64):
    """dict(idx, codes, shift, scale, lut, values=decoded, pre) for one reference tensor."""
    idx, v = ref_topk(ref_chunks(x, chunk), topk)
    codes, shift, scale, lut, pre = ref_quantize(v)
    return dict(idx=idx, codes=codes, shift=shift, scale=scale, lut=lut,
                values=lut[codes] + shift, pre=pre)


def ref_decompress(idx, values, shape, chunk: int = 64) -> np.ndarray:
    n_chunks = idx.shape[0]
    size = int(np.prod(shape)) // n_chunks
    dense = np.zeros((n_chunks, size))
    for c in range(n_chunks):
        dense[c, idx[c]] = values[c]
    return ref_unchunk(dense, shape, chunk)


def ref_aggregate(peers, shape, rule: str = "median_clip", chunk: int = 64) -> np.ndarray:
    """peers: list of (idx [C,K], decoded values [C,K]). SPEC 2.4 or the paper's 1/R mean."""
    n_chunks = peers[0][0].shape[0]
    size = int(np.prod(shape)) // n_chunks
    if rule == "mean":
        total = sum(ref_decompress(i, v, shape, chunk) for i, v in peers)
        return total / len(peers)
    norms = [np.sqrt(np.sum(np.asarray(v, np.float64) ** 2)) for _, v in peers]
    m = sorted(norms)[(len(norms) - 1) // 2]  # lower median
    sums = np.zeros((n_chunks, size))
    counts = np.zeros((n_chunks, size))
    for (i, v), n in zip(peers, norms):
        v = np.asarray(v, np.float64) * min(1.0, m / (n + 1e-8))
        for c in range(n_chunks):
            for j in range(i.shape[1]):
                sums[c, i[c, j]] += v[c, j]
                counts[c, i[c, j]] += 1
    mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    out = ref_unchunk(mean, shape, chunk)
    return out if np.all(np.isfinite(out)) else np.zeros(shape)
