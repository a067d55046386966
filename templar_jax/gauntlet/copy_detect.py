"""Copy detection: how many of the same chunk-local indices two peers selected.

For one tensor, each peer's payload holds `idx [*batch, C, k]` (templar_jax.sparseloco.payload).
Per chunk, overlap = |A ∩ B| / k; a tensor's overlap is the mean over its chunks, and the pair's
overlap is the mean over the tensors both payloads carry (every tensor counts once, whatever its
size, so a few huge matrices do not drown out the rest; pass `names` to compare a subset and bound
the work on big models). Two independent miners on different data pick mostly different top-k
coordinates; a copier's payload matches its source.

Vectorized per tensor: concatenate both peers' rows, sort each row, count equal neighbours.
Duplicate or negative indices inside one payload are first replaced by distinct negative
sentinels, so a malformed payload can never match itself and frame another peer.
`pairwise_overlaps` walks tensor by tensor and reads each peer's indices of a tensor once, so
with payloads that decode one tensor per access (the validator's spooled payloads) it holds one
tensor of every peer, never whole payloads.

Sketches (`index_sketch`, `detect_copies_sketched`): the same overlap measured on `chunks`
sampled chunk rows per tensor (all rows of a smaller tensor), drawn from the window's evaluation
seed, so no miner knows which rows count while it can still upload. A sketch is a few hundred
KB per peer whatever the model; comparing all pairs costs N^2 sketch compares instead of N^2
full index sets. The mean chunk overlap of the sampled rows is an unbiased estimate of the
tensor's (a copier's 1.0 stays exactly 1.0); its standard error is at most 0.5 / sqrt(chunks)
(0.031 for 256 rows), and less after the mean over tensors.

Penalties go to the LATER uploader of a pair (by storage timestamp; an exact tie penalizes both,
since neither can be shown to be the source). A uid's strongest penalty of the window applies once:
  overlap >= 0.4 -> final score x 0.5          ("halve")
  overlap >= 0.5 -> record reset to a new uid's ("reset": rating (25, 25/3), BMA 0, score 0)
  overlap >= 0.6 -> reset and banned for 20 windows after this one ("ban")
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import ScoreInputError
from templar_jax.gauntlet.state import ValidatorState

_ACTION_RANK = {"halve": 1, "reset": 2, "ban": 3}


class CopyVerdict(NamedTuple):
    uid: int  # the later uploader, who is penalized
    source_uid: int  # the peer it overlapped with most
    overlap: float
    action: str  # "halve" | "reset" | "ban"


def _clean_rows(idx_CxK: np.ndarray, sentinel_offset: int) -> np.ndarray:
    """Sort each row; replace duplicates and negatives with unique negative sentinels."""
    rows = np.sort(np.asarray(idx_CxK).astype(np.int64), axis=-1)
    k = rows.shape[-1]
    bad = rows < 0
    bad[..., 1:] |= rows[..., 1:] == rows[..., :-1]
    sentinels = -(1 + sentinel_offset + np.arange(k, dtype=np.int64))
    return np.where(bad, np.broadcast_to(sentinels, rows.shape), rows)


def _cleaned_overlap(clean_a: np.ndarray, clean_b: np.ndarray) -> np.ndarray:
    """chunk_overlap of two `_clean_rows(x, 0)` results (b's sentinels moved past a's)."""
    if clean_a.shape != clean_b.shape or clean_a.ndim < 1:
        raise ScoreInputError(f"index arrays differ in shape: {clean_a.shape} vs {clean_b.shape}")
    k = clean_a.shape[-1]
    if k == 0:
        return np.zeros(clean_a.shape[:-1], np.float64)
    both = np.concatenate([clean_a, np.where(clean_b < 0, clean_b - k, clean_b)], axis=-1)
    both.sort(axis=-1)
    shared = np.count_nonzero(both[..., 1:] == both[..., :-1], axis=-1)
    return shared / float(k)


def chunk_overlap(idx_a: np.ndarray, idx_b: np.ndarray) -> np.ndarray:
    """Fraction of shared indices per chunk, shape [*batch, C], values in [0, 1]."""
    a, b = np.asarray(idx_a), np.asarray(idx_b)
    if a.shape != b.shape or a.ndim < 1:
        raise ScoreInputError(f"index arrays differ in shape: {a.shape} vs {b.shape}")
    return _cleaned_overlap(_clean_rows(a, 0), _clean_rows(b, 0))


def payload_overlap(payload_a: Mapping, payload_b: Mapping, names: Iterable[str] | None = None) -> float:
    """Mean over tensors (present in both) of the mean chunk overlap; 0.0 if none in common."""
    common = sorted(set(payload_a) & set(payload_b) if names is None
                    else set(names) & set(payload_a) & set(payload_b))
    if not common:
        return 0.0
    per_tensor = [float(chunk_overlap(payload_a[n].idx, payload_b[n].idx).mean()) for n in common]
    return float(np.mean(per_tensor))


def pairwise_overlaps(
    payloads: Mapping[int, Mapping], names: Iterable[str] | None = None
) -> dict[tuple[int, int], float]:
    """Overlap of every unordered pair (uid_a < uid_b); equal to `payload_overlap` per pair.

    Tensor-major: for each tensor (sorted names, as `payload_overlap` averages them), every
    peer's indices are read and cleaned once and compared with every other peer's."""
    wanted = None if names is None else set(names)
    return _tensor_major(payloads, lambda payload, name: _clean_rows(payload[name].idx, 0),
                         None if wanted is None else wanted.__contains__)


def _tensor_major(peers: Mapping[int, Mapping], rows_of, keep=None) -> dict[tuple[int, int], float]:
    """Pair overlaps from `rows_of(peer, name)` (cleaned rows), one tensor at a time."""
    uids = sorted(int(u) for u in peers)
    pairs = list(itertools.combinations(uids, 2))
    per_pair: dict[tuple[int, int], list[float]] = {pair: [] for pair in pairs}
    every = sorted(set().union(*(set(peers[u]) for u in uids)) if uids else set())
    for name in every if keep is None else [n for n in every if keep(n)]:
        rows = {u: rows_of(peers[u], name) for u in uids if name in peers[u]}
        for a, b in pairs:
            if a in rows and b in rows:
                per_pair[(a, b)].append(float(_cleaned_overlap(rows[a], rows[b]).mean()))
    return {pair: float(np.mean(values)) if values else 0.0 for pair, values in per_pair.items()}


def sampled_rows(total: int, chunks: int, seed: int, name: str) -> np.ndarray:
    """The flattened chunk rows of tensor `name` a sketch keeps: `chunks` of `total`, sorted,
    the same for every peer of the window (all rows when the tensor has no more)."""
    if total <= chunks:
        return np.arange(total)
    tag = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng([int(seed) & (2**64 - 1), tag])
    return np.sort(rng.choice(total, size=chunks, replace=False))


def index_sketch(payload: Mapping, chunks: int, seed: int) -> dict[str, np.ndarray]:
    """name -> the cleaned index rows of the sampled chunks ([n, k] int32), read one tensor at
    a time (a spooled payload decodes only that tensor)."""
    if chunks < 1:
        raise ScoreInputError(f"a sketch needs chunks >= 1, got {chunks}")
    out = {}
    for name in sorted(payload):
        idx = np.asarray(payload[name].idx)
        flat = idx.reshape(-1, idx.shape[-1])
        out[name] = _clean_rows(flat[sampled_rows(len(flat), chunks, seed, name)], 0).astype(np.int32)
    return out


def sketch_overlaps(sketches: Mapping[int, Mapping[str, np.ndarray]]) -> dict[tuple[int, int], float]:
    """`pairwise_overlaps` on sketches: mean over tensors of the sampled rows' mean overlap."""
    return _tensor_major(sketches, lambda sketch, name: sketch[name])


def detect_copies_sketched(
    sketches: Mapping[int, Mapping[str, np.ndarray]],
    upload_times: Mapping[int, float],
    cfg: GauntletConfig,
) -> list[CopyVerdict]:
    """sketch_overlaps + copy_verdicts (`detect_copies` on sketches of the payloads)."""
    return copy_verdicts(sketch_overlaps(sketches), upload_times, cfg)


def _action(overlap: float, cfg: GauntletConfig) -> str | None:
    if overlap >= cfg.copy_ban_overlap:
        return "ban"
    if overlap >= cfg.copy_reset_overlap:
        return "reset"
    if overlap >= cfg.copy_halve_overlap:
        return "halve"
    return None


def copy_verdicts(
    overlaps: Mapping[tuple[int, int], float],
    upload_times: Mapping[int, float],
    cfg: GauntletConfig,
) -> list[CopyVerdict]:
    """One verdict per penalized uid (its strongest), sorted by uid."""
    best: dict[int, CopyVerdict] = {}
    for (a, b), overlap in sorted(overlaps.items()):
        action = _action(overlap, cfg)
        if action is None:
            continue
        if a not in upload_times or b not in upload_times:
            raise ScoreInputError(f"upload time missing for pair ({a}, {b})")
        ta, tb = float(upload_times[a]), float(upload_times[b])
        later = [(a, b)] if ta > tb else [(b, a)] if tb > ta else [(a, b), (b, a)]
        for uid, source in later:
            verdict = CopyVerdict(uid, source, float(overlap), action)
            old = best.get(uid)
            if old is None or (_ACTION_RANK[action], overlap) > (_ACTION_RANK[old.action], old.overlap):
                best[uid] = verdict
    return [best[uid] for uid in sorted(best)]


def detect_copies(
    payloads: Mapping[int, Mapping],
    upload_times: Mapping[int, float],
    cfg: GauntletConfig,
    names: Iterable[str] | None = None,
) -> list[CopyVerdict]:
    """pairwise_overlaps + copy_verdicts."""
    return copy_verdicts(pairwise_overlaps(payloads, names), upload_times, cfg)


def apply_copy_verdicts(
    state: ValidatorState, verdicts: Iterable[CopyVerdict], window: int, cfg: GauntletConfig
) -> ValidatorState:
    """Halve, reset or reset-and-ban each penalized uid (ban: windows window .. window+20)."""
    for verdict in verdicts:
        rec = state.peer(verdict.uid, cfg)
        if verdict.action == "halve":
            rec = dataclasses.replace(rec, final_score=rec.final_score * cfg.copy_halve_factor)
        else:
            rec = rec.reset(cfg)
            if verdict.action == "ban":
                until = window + 1 + cfg.copy_ban_windows
                rec = dataclasses.replace(rec, banned_until=max(rec.banned_until, until))
        state = state.with_peer(verdict.uid, rec)
    return state
