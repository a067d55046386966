"""Stale copies: a payload that repeats an update already published in an earlier window.

Copy detection (copy_detect.py) compares the peers of one window. A peer can also upload
something older that no peer of its own window sent: its own payload of an earlier window (a
replayer that trained once), or the previous window's aggregate, which the leader publishes and
anyone can read (a free rider). So after each scored window the validator remembers the index
sets it saw there: every valid payload, and the top-k indices of the aggregate it applied (what
a peer compressing it would upload), for the last `stale_copy_windows` scored windows (2: a slow
leader may publish W-1's aggregate only after W's uploads closed, so a free rider's freshest
pick can be W-2's). Each payload is compared with each of them by the same per-chunk index
overlap, with the copy thresholds and penalties (halve 0.4, reset 0.5, ban 0.6,
`copy_verdicts`); the current uploader is always the later one.

Bounded memory and work on any model: per tensor only `stale_copy_chunks` chunks are remembered
(0 turns the check off), drawn with the window's evaluation seed, so no miner knows which ones
are compared and a partial replay cannot aim around them; the aggregate's top-k is selected in
those chunks only (`sparseloco.topk_rows`).

Honest peers stay clear of it: error feedback leaves little of a sent coordinate behind, so a
peer's next top-k lands elsewhere. On the demo model honest peers overlap their own previous
payload and the previous aggregate at 0.27-0.33 (0.27 is the share of 1-D tensors, sent whole
by everyone); a replay or the re-compressed aggregate overlaps at 1.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.copy_detect import CopyVerdict, chunk_overlap, copy_verdicts

AGGREGATE_SOURCE = -1  # source of a verdict against the previous window's aggregate
# chosen chunk rows per tensor -> the window's aggregate's top-k indices at those rows ([n, k] each)
AggregateRows = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class EarlierUpdates:
    """What one scored window published, as sampled index rows."""

    window: int
    rows: Mapping[str, np.ndarray]  # per tensor: which flattened chunk rows were kept
    indices: Mapping[int, Mapping[str, np.ndarray]]  # source (uid or AGGREGATE_SOURCE) -> tensor -> idx [n, k]


def _rows_of(idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx)
    return idx.reshape(-1, idx.shape[-1])[rows]


def remember_updates(window: int, updates: Mapping[int, Mapping], cfg: GauntletConfig, *, seed: int,
                     aggregate_rows: AggregateRows | None = None) -> EarlierUpdates | None:
    """Sampled index rows of `updates` (uid -> payload with `.idx` per tensor) and, through
    `aggregate_rows` (chosen rows per tensor -> the aggregate's top-k indices there, [n, k]),
    of the window's aggregate; None when the check is off or there is nothing to remember."""
    if cfg.stale_copy_chunks <= 0 or not updates:
        return None
    rng = np.random.default_rng([int(seed), int(window)])
    rows: dict[str, np.ndarray] = {}
    for name in sorted(set().union(*(set(p) for p in updates.values()))):
        like = next(p[name] for p in updates.values() if name in p)
        shape = np.shape(like.idx)
        total = int(np.prod(shape[:-1]))
        rows[name] = np.sort(rng.choice(total, size=min(total, cfg.stale_copy_chunks), replace=False))
    indices = {int(src): {n: _rows_of(p[n].idx, rows[n]) for n in p if n in rows} for src, p in updates.items()}
    if aggregate_rows is not None:
        indices[AGGREGATE_SOURCE] = {n: np.asarray(idx) for n, idx in aggregate_rows(rows).items()}
    return EarlierUpdates(int(window), rows, indices)


def sampled_overlap(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """`payload_overlap` over sampled rows: mean over common tensors of the mean chunk overlap."""
    common = sorted(n for n in set(a) & set(b) if np.shape(a[n]) == np.shape(b[n]))
    if not common:
        return 0.0
    return float(np.mean([chunk_overlap(a[n], b[n]).mean() for n in common]))


def remember(history: Sequence[EarlierUpdates], window: int, updates: Mapping[int, Mapping], cfg: GauntletConfig,
             *, seed: int, aggregate_rows: AggregateRows | None = None) -> tuple[EarlierUpdates, ...]:
    """`history` plus `window`'s updates (`remember_updates`), the last `stale_copy_windows` kept."""
    new = remember_updates(window, updates, cfg, seed=seed, aggregate_rows=aggregate_rows)
    kept = [*history, new] if new is not None else list(history)
    return tuple(kept[-cfg.stale_copy_windows:]) if cfg.stale_copy_windows > 0 else ()


def detect_stale_copies(payloads: Mapping[int, Mapping], history: Sequence[EarlierUpdates],
                        cfg: GauntletConfig) -> list[CopyVerdict]:
    """One verdict (its strongest) per uid whose payload repeats an update of `history`."""
    if cfg.stale_copy_chunks <= 0:
        return []
    history = list(history)
    sources = [(i, src) for i, earlier in enumerate(history) for src in sorted(earlier.indices)]
    # each earlier update takes an id no uid has, stamped before every upload of this window, so
    # copy_verdicts' rule (penalize the later uploader, strongest verdict per uid) applies as is
    alias = {-(2 + i): source for i, source in enumerate(sources)}
    times = {a: -math.inf for a in alias}
    names = sorted({n for earlier in history for n in earlier.rows})
    overlaps = {}
    for uid, payload in payloads.items():
        times[int(uid)] = 0.0
        # each tensor read once per uid (a spooled payload decodes it on every access), its
        # remembered rows of every earlier window taken from that one read
        mine: list[dict[str, np.ndarray]] = [{} for _ in history]
        for n in names:
            if n not in payload:
                continue
            idx = payload[n].idx
            for picked, earlier in zip(mine, history):
                if n in earlier.rows:
                    picked[n] = _rows_of(idx, earlier.rows[n])
        for a, (i, src) in alias.items():
            overlaps[(int(uid), a)] = sampled_overlap(mine[i], history[i].indices[src])
    return [v._replace(source_uid=alias[v.source_uid][1]) for v in copy_verdicts(overlaps, times, cfg)]
