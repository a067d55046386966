"""The validator's own files in the run folder (scoring state, evaluation secret) for a validator
that may span processes: process 0 alone reads and writes them, every process uses its values
(the run folder need not be shared for these; it is for the checkpoints). One process: plain
reads and writes, as before."""

from __future__ import annotations

from pathlib import Path

from templar_jax.gauntlet import load_or_create_secret, load_or_init, save_state
from templar_jax.gauntlet.state import ValidatorState, state_from_json, state_to_json
from templar_jax.multihost import SoloAgreement


def agreed_state(agreement: SoloAgreement, path: Path) -> ValidatorState:
    """The saved scoring state (a fresh one if none), as process 0 reads it."""
    if not agreement.multiprocess:
        return load_or_init(path)
    return state_from_json(agreement.value("validator state", lambda: state_to_json(load_or_init(path))))


def agreed_secret(agreement: SoloAgreement, path: Path) -> bytes:
    """The evaluation secret, created on process 0 at the first start (only the neuron's own
    processes receive it)."""
    return agreement.blob("evaluation secret", lambda: load_or_create_secret(path))


def save_state_once(agreement: SoloAgreement, state: ValidatorState, path: Path) -> None:
    """Process 0 saves the state (every process holds the same one)."""
    agreement.leader_only("save validator state", lambda: save_state(state, path))
