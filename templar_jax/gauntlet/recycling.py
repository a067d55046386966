"""Uid recycling: when a uid's hotkey changes (deregistered, then taken by a new hotkey), the new
owner starts as a new uid: its record (rating, BMA, scores, streaks, ban) is dropped, as in the
reference. A uid seen for the first time just has its hotkey recorded. Uids no longer on the chain
keep their record until a new hotkey shows up on them (the record is what a returning
deregistration would otherwise escape).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from templar_jax.gauntlet.state import ValidatorState


def observe_hotkeys(state: ValidatorState, hotkeys: Mapping[int, str]) -> tuple[ValidatorState, list[int]]:
    """Record each uid's current hotkey; -> (state, uids whose hotkey changed and were reset)."""
    seen = dict(state.hotkeys)
    peers = dict(state.peers)
    recycled = []
    for uid, hotkey in sorted((int(u), str(h)) for u, h in hotkeys.items()):
        old = seen.get(uid)
        if old is not None and old != hotkey:
            peers.pop(uid, None)
            recycled.append(uid)
        seen[uid] = hotkey
    return dataclasses.replace(state, hotkeys=seen, peers=peers), recycled
