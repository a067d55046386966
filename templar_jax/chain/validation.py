"""Input checks shared by every Chain implementation (so both refuse the same things)."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from templar_jax.chain.errors import (
    CommitmentTooLongError,
    InvalidCommitmentError,
    InvalidHotkeyError,
    InvalidWeightsError,
)

# The Bittensor commitments pallet stores at most 128 bytes of raw data per field.
MAX_COMMITMENT_BYTES = 128
MAX_HOTKEY_CHARS = 64


def commitment_bytes(data: str) -> int:
    """The UTF-8 size of a commitment; a typed error if it is not a str of <= 128 bytes.

    A lone surrogate ("\\ud800") is a valid Python str that no chain can store: it raises
    InvalidCommitmentError, never UnicodeEncodeError.
    """
    if not isinstance(data, str):
        raise InvalidCommitmentError(f"commitment must be str, got {type(data).__name__}")
    try:
        n_bytes = len(data.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidCommitmentError(
            f"commitment is not encodable as UTF-8 ({exc.reason} at position {exc.start})"
        ) from None
    if n_bytes > MAX_COMMITMENT_BYTES:
        raise CommitmentTooLongError(
            f"commitment is {n_bytes} bytes of UTF-8; the chain accepts at most "
            f"{MAX_COMMITMENT_BYTES}"
        )
    return n_bytes


def validate_commitment(data: str) -> str:
    """Return `data` if it is a str of <= 128 UTF-8 bytes; raise a typed error otherwise."""
    commitment_bytes(data)
    return data


def is_valid_commitment(data: object) -> bool:
    """Whether a commitment read back from a chain is one `commit` would have accepted
    (readers drop the others: a peer's commitment is untrusted input)."""
    try:
        commitment_bytes(data)  # type: ignore[arg-type]
    except (InvalidCommitmentError, CommitmentTooLongError):
        return False
    return True


def validate_hotkey(hotkey: str) -> str:
    """Hotkey names are short printable strings without surrounding whitespace."""
    if not isinstance(hotkey, str) or not hotkey:
        raise InvalidHotkeyError("hotkey must be a non-empty string")
    if len(hotkey) > MAX_HOTKEY_CHARS:
        raise InvalidHotkeyError(f"hotkey is {len(hotkey)} chars; at most {MAX_HOTKEY_CHARS}")
    if hotkey != hotkey.strip() or not hotkey.isprintable():
        raise InvalidHotkeyError(
            "hotkey must be printable without leading/trailing whitespace"
        )
    return hotkey


def validate_stake(stake: float) -> float:
    try:
        value = float(stake)
    except (TypeError, ValueError) as exc:
        raise InvalidHotkeyError(f"stake must be a number, got {stake!r}") from exc
    if not math.isfinite(value) or value < 0:
        raise InvalidHotkeyError(f"stake must be finite and >= 0, got {value}")
    return value


def normalize_weights(
    uids: Sequence[int], weights: Sequence[float], known_uids: Iterable[int]
) -> dict[int, float]:
    """Validate a weight vector and return {uid: weight} summing to 1.

    Refuses (InvalidWeightsError): mismatched lengths, an empty vector, non-integer or
    duplicated or unknown uids, non-finite or negative weights, and an all-zero vector.
    Zero entries are dropped from the result (they carry no information).
    """
    uids = list(uids)
    weights = list(weights)
    if len(uids) != len(weights):
        raise InvalidWeightsError(f"{len(uids)} uids but {len(weights)} weights")
    if not uids:
        raise InvalidWeightsError("no weights given")
    known = set(int(u) for u in known_uids)
    seen: set[int] = set()
    clean: list[tuple[int, float]] = []
    for raw_uid, raw_w in zip(uids, weights):
        try:
            uid = int(raw_uid)
        except (TypeError, ValueError) as exc:
            raise InvalidWeightsError(f"uid {raw_uid!r} is not an integer") from exc
        if uid != raw_uid:
            raise InvalidWeightsError(f"uid {raw_uid!r} is not an integer")
        if uid in seen:
            raise InvalidWeightsError(f"uid {uid} appears twice")
        seen.add(uid)
        if uid not in known:
            raise InvalidWeightsError(f"uid {uid} is not registered")
        try:
            w = float(raw_w)
        except (TypeError, ValueError) as exc:
            raise InvalidWeightsError(f"weight for uid {uid} is not a number") from exc
        if not math.isfinite(w):
            raise InvalidWeightsError(f"weight for uid {uid} is not finite ({w})")
        if w < 0:
            raise InvalidWeightsError(f"weight for uid {uid} is negative ({w})")
        clean.append((uid, w))
    total = math.fsum(w for _, w in clean)
    if total <= 0:
        raise InvalidWeightsError("all weights are zero")
    return {uid: w / total for uid, w in clean if w > 0}
