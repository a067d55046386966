"""Evaluation-uid sampling and the leader's gather/reserve list."""

import numpy as np

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.selection import (
    rank_uids,
    select_eval_uids,
    select_gather_peers,
    staleness_weight,
)
from templar_jax.gauntlet.state import PeerRecord, ValidatorState

CFG = GauntletConfig()


def test_staleness_weight():
    assert staleness_weight(-1, 50, CFG) == 21.0
    assert staleness_weight(49, 50, CFG) == 2.0
    assert staleness_weight(10, 50, CFG) == 21.0
    assert staleness_weight(50, 50, CFG) == 1.0


def test_selection_is_deterministic_bounded_and_skips_banned():
    peers = {u: PeerRecord.initial(CFG) for u in range(60)}
    peers[5] = PeerRecord(mu=25.0, sigma=8.0, banned_until=200)
    state = ValidatorState(peers=peers)
    cands = list(range(60))
    picked = select_eval_uids(state, cands, window=100, cfg=CFG)
    assert len(picked) == 20 and picked == sorted(set(picked)) and 5 not in picked
    assert picked == select_eval_uids(state, reversed(cands), window=100, cfg=CFG)
    assert picked != select_eval_uids(state, cands, window=101, cfg=CFG)
    assert select_eval_uids(state, [5, 6], window=100, cfg=CFG) == [6]
    assert select_eval_uids(state, [5], window=100, cfg=CFG) == []
    assert 5 in select_eval_uids(state, [5, 6], window=200, cfg=CFG)


def test_selection_favours_uids_not_evaluated_recently():
    # 30 uids evaluated last window (weight 2) vs 30 never evaluated (weight 21).
    peers = {u: PeerRecord(mu=25.0, sigma=8.0, last_eval_window=99) for u in range(30)}
    peers.update({u: PeerRecord.initial(CFG) for u in range(30, 60)})
    state = ValidatorState(peers=peers)
    stale_share = np.mean([
        np.mean([u >= 30 for u in select_eval_uids(state, range(60), window=100,
                                                   cfg=GauntletConfig(selection_seed=s))])
        for s in range(40)
    ])
    assert stale_share > 0.85


def test_gather_list_ranks_and_excludes():
    peers = {u: PeerRecord(mu=25.0, sigma=8.0, final_score=float(u % 7)) for u in range(40)}
    peers[6] = PeerRecord(mu=25.0, sigma=8.0, final_score=99.0, excluded=True)
    peers[13] = PeerRecord(mu=25.0, sigma=8.0, final_score=99.0, banned_until=60)
    peers[20] = PeerRecord(mu=40.0, sigma=1.0, final_score=6.0)  # same score, better ordinal
    state = ValidatorState(peers=peers)
    pl = select_gather_peers(state, range(40), window=50, cfg=CFG, gather=20, reserve=10)
    assert len(pl.gather) == 20 and len(pl.reserve) == 10
    assert 6 not in pl.gather + pl.reserve and 13 not in pl.gather + pl.reserve
    assert pl.gather[:4] == [20, 27, 34, 5]  # score 6: ordinal desc, then uid asc
    assert set(pl.gather).isdisjoint(pl.reserve)
    ranked = rank_uids(state, range(40), CFG)
    assert pl.gather + pl.reserve == [u for u in ranked if u not in (6, 13)][:30]
    fresh = select_gather_peers(ValidatorState(), range(3), window=0, cfg=CFG, gather=20, reserve=10)
    assert fresh.gather == [0, 1, 2] and fresh.reserve == []
