"""The validator's scoring state: one record per uid plus window bookkeeping, and its JSON file.

State is immutable by convention: every rule takes a `ValidatorState` and returns a new one
(`dataclasses.replace`), never editing `peers` in place, so a rule can be tested in isolation and a
half-applied window never exists. Persistence is JSON (never pickle: a validator must be able to
read its own state file without executing anything), written atomically: temp file in the same
directory, fsync, `os.replace`, fsync of the directory. A crash leaves either the old or the new
file, never a torn one, so a restarted validator resumes scoring where it stopped.

Version 2 added the hotkey seen on each uid (uid recycling, recycling.py), each record's
missing-upload streak (escalating slash) and the recent evaluation-seed draws (eval_seed.py, for
audits); a version-1 file still loads (empty hotkeys and draws, streaks 0).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import StateError
from templar_jax.gauntlet.eval_seed import EvalDraw

STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)
DRAWS_KEPT = 64  # recent evaluation-seed draws kept in the state (every draw is also in the event log)
STATE_KIND = "templar-jax/gauntlet-state"
NEVER = -1  # window value meaning "has not happened"


@dataclass(frozen=True)
class PeerRecord:
    """Everything the Gauntlet remembers about one uid."""

    mu: float  # OpenSkill rating
    sigma: float
    bma: float = 0.0  # binary moving average of the own-vs-random indicator
    eval_count: int = 0  # evaluations that updated the BMA (warm-up counter)
    final_score: float = 0.0  # ordinal * max(0, BMA) * sync, then slashed; weights rank on it
    loss_score: float = 0.0  # last LossScore
    sync: float = 1.0  # last sync score (1.0 until the first debug comparison)
    steps_behind: float = 0.0  # last x of the sync rule
    last_eval_window: int = NEVER
    inactive_windows: int = 0  # consecutive windows without a payload
    negative_streak: int = 0  # consecutive negative evaluations
    excluded: bool = False  # excluded from gather until a positive evaluation
    banned_until: int = NEVER  # banned while window < banned_until (copy detection)
    missing_streak: int = 0  # consecutive windows without a valid payload (escalating slash)

    @classmethod
    def initial(cls, cfg: GauntletConfig) -> "PeerRecord":
        return cls(mu=cfg.openskill_mu, sigma=cfg.openskill_sigma)

    def reset(self, cfg: GauntletConfig) -> "PeerRecord":
        """A new uid's record (rating, BMA, scores, streaks); keeps the ban and the
        evaluation/activity bookkeeping, so a reset cannot be used to dodge either."""
        return dataclasses.replace(
            PeerRecord.initial(cfg),
            banned_until=self.banned_until,
            last_eval_window=self.last_eval_window,
            inactive_windows=self.inactive_windows,
            missing_streak=self.missing_streak,
        )

    def ordinal(self, cfg: GauntletConfig) -> float:
        return self.mu - cfg.ordinal_z * self.sigma

    def is_banned(self, window: int) -> bool:
        return window < self.banned_until


@dataclass(frozen=True)
class ValidatorState:
    """Per-uid records plus the sync-score bookkeeping that spans windows."""

    window: int = NEVER  # last window whose scoring was applied
    peers: Mapping[int, PeerRecord] = field(default_factory=dict)
    # Validator's own parameter sample from the previous window and the EMA of the per-step
    # absolute change of each sampled element (sync.py); None until two samples were seen.
    sync_prev_sample: tuple[float, ...] | None = None
    sync_change_ema: tuple[float, ...] | None = None
    hotkeys: Mapping[int, str] = field(default_factory=dict)  # hotkey last seen on each uid
    eval_draws: tuple[EvalDraw, ...] = ()  # the last DRAWS_KEPT evaluation-seed draws, oldest first
    version: int = STATE_VERSION

    def peer(self, uid: int, cfg: GauntletConfig) -> PeerRecord:
        """The uid's record, or a fresh one for a uid never seen."""
        return self.peers.get(int(uid)) or PeerRecord.initial(cfg)

    def with_peer(self, uid: int, record: PeerRecord) -> "ValidatorState":
        peers = dict(self.peers)
        peers[int(uid)] = record
        return dataclasses.replace(self, peers=peers)

    def update_peer(self, uid: int, cfg: GauntletConfig, **changes: Any) -> "ValidatorState":
        return self.with_peer(uid, dataclasses.replace(self.peer(uid, cfg), **changes))

    def with_draw(self, draw: EvalDraw) -> "ValidatorState":
        """Record a window's evaluation-seed draw (replacing an earlier one of the same window)."""
        kept = [d for d in self.eval_draws if d.window != draw.window] + [draw]
        return dataclasses.replace(self, eval_draws=tuple(kept[-DRAWS_KEPT:]))


# ---------------------------------------------------------------------------------------------
# JSON persistence
# ---------------------------------------------------------------------------------------------
_RECORD_FIELDS = {f.name: f.type for f in dataclasses.fields(PeerRecord)}
_ADDED_IN_V2 = {"missing_streak"}


def state_to_json(state: ValidatorState) -> str:
    """Serialize; non-finite floats are refused (JSON has no NaN and a NaN score is a bug)."""
    doc = {
        "kind": STATE_KIND,
        "version": state.version,
        "window": state.window,
        "peers": {str(uid): dataclasses.asdict(rec) for uid, rec in sorted(state.peers.items())},
        "sync_prev_sample": _opt_list(state.sync_prev_sample),
        "sync_change_ema": _opt_list(state.sync_change_ema),
        "hotkeys": {str(uid): hk for uid, hk in sorted(state.hotkeys.items())},
        "eval_draws": [d._asdict() for d in state.eval_draws],
    }
    try:
        return json.dumps(doc, allow_nan=False, sort_keys=True, indent=1)
    except ValueError as exc:
        raise StateError(f"state holds a non-finite number: {exc}") from exc


def state_from_json(text: str) -> ValidatorState:
    """Parse and check every field; anything unexpected raises StateError(reason)."""
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise StateError(f"state file is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != STATE_KIND:
        raise StateError("state file is not a gauntlet state (missing or wrong 'kind')")
    version = doc.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise StateError(f"unknown state version {version!r} (readable: {READABLE_VERSIONS})")
    window = _int(doc.get("window"), "window")
    peers_doc = doc.get("peers")
    if not isinstance(peers_doc, dict):
        raise StateError("'peers' must be an object of uid -> record")
    peers = {_uid(key): _record(key, value, version) for key, value in peers_doc.items()}
    prev = _float_tuple(doc.get("sync_prev_sample"), "sync_prev_sample")
    ema = _float_tuple(doc.get("sync_change_ema"), "sync_change_ema")
    if prev is not None and ema is not None and len(prev) != len(ema):
        raise StateError("sync_prev_sample and sync_change_ema differ in length")
    hotkeys = _hotkeys(doc.get("hotkeys", {}) if version >= 2 else {})
    draws = _draws(doc.get("eval_draws", []) if version >= 2 else [])
    return ValidatorState(window=window, peers=peers, sync_prev_sample=prev, sync_change_ema=ema,
                          hotkeys=hotkeys, eval_draws=draws)


def save_state(state: ValidatorState, path: str | os.PathLike) -> None:
    """Write atomically: temp file beside the target, fsync, os.replace, fsync the directory."""
    path = Path(path)
    text = state_to_json(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_state(path: str | os.PathLike) -> ValidatorState:
    """Read a state file written by save_state; StateError if missing, unreadable or corrupt."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise StateError(f"no state file at {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read state file {path}: {exc}") from exc
    return state_from_json(text)


def load_or_init(path: str | os.PathLike) -> ValidatorState:
    """Resume from `path` if it exists, else start empty (a corrupt file still raises)."""
    if not Path(path).exists():
        return ValidatorState()
    return load_state(path)


# --- field checks ------------------------------------------------------------------------------
def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite constant {name}")


def _opt_list(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"{what} must be an integer, got {value!r}")
    return value


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StateError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _uid(key: str) -> int:
    if not key.isdigit():
        raise StateError(f"peer key {key!r} is not a uid")
    return int(key)


def _record(key: str, value: Any, version: int = STATE_VERSION) -> PeerRecord:
    expected = set(_RECORD_FIELDS) - (_ADDED_IN_V2 if version < 2 else set())
    if not isinstance(value, dict) or set(value) != expected:
        raise StateError(f"peer {key}: record fields must be exactly {sorted(expected)}")
    parsed: dict[str, Any] = {}
    for name, type_name in _RECORD_FIELDS.items():
        if name not in value:
            continue  # a field added after this file's version keeps its default
        what = f"peer {key}.{name}"
        if type_name == "bool":
            if not isinstance(value[name], bool):
                raise StateError(f"{what} must be a boolean")
            parsed[name] = value[name]
        elif type_name == "int":
            parsed[name] = _int(value[name], what)
        else:
            parsed[name] = _float(value[name], what)
    if parsed["sigma"] <= 0:
        raise StateError(f"peer {key}.sigma must be > 0")
    return PeerRecord(**parsed)


def _float_tuple(value: Any, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise StateError(f"{what} must be a list of numbers or null")
    return tuple(_float(v, f"{what}[{i}]") for i, v in enumerate(value))


def _hotkeys(value: Any) -> dict[int, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StateError("'hotkeys' must be an object of uid -> hotkey string")
    return {_uid(key): hk for key, hk in value.items()}


def _draws(value: Any) -> tuple[EvalDraw, ...]:
    if not isinstance(value, list):
        raise StateError("'eval_draws' must be a list")
    draws = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != set(EvalDraw._fields):
            raise StateError(f"eval_draws[{i}] must hold exactly {list(EvalDraw._fields)}")
        if not (isinstance(item["block_hash"], str) and isinstance(item["secret_sha256"], str)):
            raise StateError(f"eval_draws[{i}]: block_hash and secret_sha256 must be strings")
        draws.append(EvalDraw(_int(item["window"], f"eval_draws[{i}].window"),
                              _int(item["block"], f"eval_draws[{i}].block"), item["block_hash"],
                              item["secret_sha256"], _int(item["seed"], f"eval_draws[{i}].seed")))
    return tuple(draws)
