"""LocalChain in one process: clocks, registration, commitments, weights, validation."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from templar_jax.chain import (
    Chain,
    ChainAlreadyInitializedError,
    ChainConfigError,
    ChainNotInitializedError,
    ChainTimeoutError,
    ChainUnavailableError,
    CommitmentTooLongError,
    InvalidCommitmentError,
    InvalidHotkeyError,
    InvalidWeightsError,
    LocalChain,
    ManualModeError,
    NotRegisteredError,
    RegistrationFullError,
)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def manual(tmp_path):
    chain = LocalChain.create(tmp_path / "chain.db", block_time=2.0, blocks_per_window=5,
                              mode="manual", settings={"version": "v1", "topk": 32})
    yield chain
    chain.close()


def test_clock_mode_block_and_timestamp_follow_genesis(tmp_path):
    clock = FakeClock(1000.0)
    chain = LocalChain.create(tmp_path / "c.db", block_time=12.0, blocks_per_window=10,
                              genesis_time=1000.0, clock=clock)
    assert isinstance(chain, Chain)
    assert chain.current_block() == 0
    clock.now = 1000.0 + 12 * 25 + 11.9
    assert chain.current_block() == 25
    assert chain.current_window() == 2
    assert chain.block_timestamp(25) == 1000.0 + 300.0
    assert chain.window_of(29) == 2 and chain.window_of(30) == 3
    clock.now = 1000.0 + 12 * 26
    assert chain.current_block() == 26
    # A second handle (as another process would open it) derives the same numbers.
    other = LocalChain(tmp_path / "c.db", clock=clock)
    assert (other.genesis_time, other.block_time, other.blocks_per_window) == (1000.0, 12.0, 10)
    assert other.current_block() == 26 and other.block_timestamp(7) == chain.block_timestamp(7)


def test_clock_mode_refuses_advance(tmp_path):
    chain = LocalChain.create(tmp_path / "c.db", block_time=1.0, blocks_per_window=10)
    with pytest.raises(ManualModeError):
        chain.advance(1)


def test_manual_mode_advance_is_shared_and_timestamps_are_real(manual):
    other = LocalChain(manual.path)
    assert manual.current_block() == 0 and other.current_block() == 0
    before = time.time()
    assert manual.advance(3) == 3
    after = time.time()
    assert other.current_block() == 3
    # blocks 1..3 appeared at the advance; block 0 at genesis (creation)
    for b in (1, 2, 3):
        assert before <= other.block_timestamp(b) <= after
    assert other.block_timestamp(0) <= before
    # a block not produced yet is estimated block_time apart from the head
    assert other.block_timestamp(5) == pytest.approx(other.block_timestamp(3) + 2 * 2.0)
    assert other.advance(2) == 5 and manual.current_window() == 1
    with pytest.raises(ValueError):
        manual.advance(0)


def test_settings_are_stored_at_init(manual):
    again = LocalChain(manual.path)
    assert again.settings == {"version": "v1", "topk": 32}
    assert again.blocks_per_window == 5 and again.mode == "manual"


def test_create_and_open_errors(tmp_path):
    with pytest.raises(ChainNotInitializedError):
        LocalChain(tmp_path / "missing.db")
    with pytest.raises(ChainConfigError):
        LocalChain.create(tmp_path / "a.db", block_time=0)
    with pytest.raises(ChainConfigError):
        LocalChain.create(tmp_path / "b.db", blocks_per_window=0)
    with pytest.raises(ChainConfigError):
        LocalChain.create(tmp_path / "c.db", mode="fast")
    LocalChain.create(tmp_path / "d.db")
    with pytest.raises(ChainAlreadyInitializedError):
        LocalChain.create(tmp_path / "d.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all, just some bytes" * 100)
    with pytest.raises(ChainNotInitializedError):
        LocalChain(tmp_path / "junk.db")


def test_register_assigns_uids_and_reregister_returns_same(manual):
    assert manual.register("validator-0", 1000) == 0
    assert manual.register("miner-0") == 1
    assert manual.register("miner-1", 0) == 2
    assert manual.register("miner-0") == 1
    assert manual.metagraph().stake_of(1) == 0.0
    assert manual.register("miner-0", 50) == 1  # re-register with stake updates it
    mg = manual.metagraph()
    assert mg.uids == (0, 1, 2)
    assert mg.hotkeys == ("validator-0", "miner-0", "miner-1")
    assert mg.stake == (1000.0, 50.0, 0.0)
    assert mg.leader_uid == 0 and mg.uid_of("miner-1") == 2 and mg.uid_of("nobody") is None
    assert mg.validator_uids == (0, 1)
    assert manual.with_hotkey("miner-1").my_uid() == 2


@pytest.mark.parametrize("hotkey", ["", " padded", "x" * 65, "tab\there"])
def test_register_rejects_bad_hotkeys(manual, hotkey):
    with pytest.raises(InvalidHotkeyError):
        manual.register(hotkey)


@pytest.mark.parametrize("stake", [-1.0, float("nan"), float("inf"), "lots"])
def test_register_rejects_bad_stake(manual, stake):
    with pytest.raises(InvalidHotkeyError):
        manual.register("v", stake)


def test_registration_full(tmp_path):
    chain = LocalChain.create(tmp_path / "c.db", mode="manual", max_uids=2)
    chain.register("a")
    chain.register("b")
    with pytest.raises(RegistrationFullError):
        chain.register("c")
    assert chain.register("a") == 0


def test_leader_is_highest_stake_ties_to_lower_uid(manual):
    assert manual.metagraph().leader_uid is None
    manual.register("m", 0)
    manual.register("v1", 500)
    manual.register("v2", 500)
    assert manual.metagraph().leader_uid == 1
    manual.register("v2", 501)
    assert manual.metagraph().leader_uid == 2


def test_commit_length_limit_counts_utf8_bytes(manual):
    manual.register("v", 10)
    me = manual.with_hotkey("v")
    me.commit("a" * 128)
    assert manual.commitments() == {0: "a" * 128}
    me.commit("é" * 64)  # 128 bytes in UTF-8
    with pytest.raises(CommitmentTooLongError):
        me.commit("é" * 65)  # 65 characters but 130 bytes
    with pytest.raises(CommitmentTooLongError):
        me.commit("a" * 129)
    with pytest.raises(InvalidCommitmentError):
        me.commit(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidCommitmentError):
        me.commit("\ud800")  # a lone surrogate cannot be encoded
    assert manual.commitments() == {0: "é" * 64}  # refused commits changed nothing


def test_commit_needs_registration(manual):
    with pytest.raises(NotRegisteredError):
        manual.commit("x")  # opened without a hotkey
    with pytest.raises(NotRegisteredError):
        manual.with_hotkey("ghost").commit("x")


def test_commitments_by_uid_and_parsed(manual):
    for name in ("v", "m0", "m1"):
        manual.register(name)
    manual.with_hotkey("v").commit("good:1")
    manual.with_hotkey("m0").commit("garbage")
    manual.advance(2)
    manual.with_hotkey("m1").commit("good:22")
    assert manual.commitments() == {0: "good:1", 1: "garbage", 2: "good:22"}
    assert manual.commitments_with_blocks()[2] == ("good:22", 2)

    def parse(raw: str) -> int:
        tag, _, value = raw.partition(":")
        if tag != "good":
            raise ValueError("bad tag")
        return int(value)

    assert manual.parsed_commitments(parse) == {0: 1, 2: 22}


def test_set_weights_normalizes_and_replaces(manual):
    for name, stake in (("v", 100), ("m0", 0), ("m1", 0)):
        manual.register(name, stake)
    v = manual.with_hotkey("v")
    v.set_weights([1, 2], [3.0, 1.0])
    assert manual.weights() == {0: {1: 0.75, 2: 0.25}}
    v.set_weights([2, 1], [1.0, 0.0])  # a new vector replaces the old one; zeros dropped
    assert manual.weights() == {0: {2: 1.0}}
    assert manual.weights_blocks() == {0: 0}


@pytest.mark.parametrize(
    "uids, weights",
    [
        ([1, 2], [float("nan"), 1.0]),
        ([1, 2], [float("inf"), 1.0]),
        ([1, 2], [-0.1, 1.0]),
        ([1, 7], [0.5, 0.5]),  # unknown uid
        ([1, 1], [0.5, 0.5]),  # duplicate
        ([1, 2], [0.0, 0.0]),  # all zero
        ([1, 2], [1.0]),  # length mismatch
        ([], []),
        ([1.5], [1.0]),  # not an integer uid
        ([1], ["heavy"]),
    ],
)
def test_set_weights_rejects_bad_vectors(manual, uids, weights):
    for name, stake in (("v", 100), ("m0", 0), ("m1", 0)):
        manual.register(name, stake)
    v = manual.with_hotkey("v")
    v.set_weights([1], [1.0])
    with pytest.raises(InvalidWeightsError):
        v.set_weights(uids, weights)
    assert manual.weights() == {0: {1: 1.0}}  # the refused vector left no trace


def test_incentive_reflects_weights_in_metagraph(manual):
    for name, stake in (("big", 900), ("small", 100), ("m0", 0), ("m1", 0)):
        manual.register(name, stake)
    assert manual.metagraph().incentive == (0.0, 0.0, 0.0, 0.0)
    manual.with_hotkey("big").set_weights([2], [1.0])
    manual.with_hotkey("small").set_weights([3], [1.0])
    inc = manual.metagraph().incentive
    # the majority of stake backs uid 2; uid 3's weight is clipped at the (zero) consensus
    assert inc == pytest.approx((0.0, 0.0, 1.0, 0.0))
    manual.with_hotkey("small").set_weights([2, 3], [0.5, 0.5])
    manual.with_hotkey("big").set_weights([2, 3], [0.5, 0.5])
    assert manual.metagraph().incentive[2:] == pytest.approx((0.5, 0.5))


def test_wait_for_block_manual(manual):
    advancer = threading.Timer(0.2, lambda: LocalChain(manual.path).advance(4))
    advancer.start()
    try:
        assert manual.wait_for_block(3, timeout=10) == 4
    finally:
        advancer.join()
    with pytest.raises(ChainTimeoutError):
        manual.wait_for_block(100, timeout=0.1)


def test_wait_for_block_clock(tmp_path):
    chain = LocalChain.create(tmp_path / "c.db", block_time=0.05, blocks_per_window=10)
    target = chain.current_block() + 3
    start = time.monotonic()
    assert chain.wait_for_block(target, timeout=5) >= target
    assert time.time() >= chain.block_timestamp(target)
    assert time.monotonic() - start < 2.0
    with pytest.raises(ChainTimeoutError):
        chain.wait_for_block(chain.current_block() + 1000, timeout=0.1)


def _hold_write_lock(path, seconds: float, locked: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def test_writes_retry_past_a_long_held_lock(tmp_path):
    """SQLite's own busy wait (50 ms here) runs out; the retry loop carries on until the lock
    is released, instead of surfacing "database is locked"."""
    LocalChain.create(tmp_path / "c.db", mode="manual")
    chain = LocalChain(tmp_path / "c.db", busy_timeout_s=0.05, lock_deadline_s=10.0)
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(chain.path, 0.4, locked))
    holder.start()
    locked.wait(5)
    start = time.monotonic()
    assert chain.register("patient") == 0
    assert time.monotonic() - start >= 0.3
    holder.join()


def test_lock_deadline_gives_typed_error(tmp_path):
    LocalChain.create(tmp_path / "c.db", mode="manual")
    chain = LocalChain(tmp_path / "c.db", busy_timeout_s=0.02, lock_deadline_s=0.2)
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(chain.path, 1.0, locked))
    holder.start()
    locked.wait(5)
    try:
        with pytest.raises(ChainUnavailableError, match="locked"):
            chain.register("impatient")
    finally:
        holder.join()
    assert chain.register("impatient") == 0  # fine once the lock is gone


def test_staked_neurons_hold_permits_and_the_rule_picks_validators(manual):
    from templar_jax.chain import ValidatorRule
    from templar_jax.chain.roles import permits_by_stake

    manual.register("validator-0", 1000)
    manual.register("miner-0", 50)  # a miner that earned stake
    manual.register("miner-1")
    mg = manual.metagraph()
    assert mg.validator_permit == (True, True, False)
    assert mg.validator_uids == (0, 1)  # the default rule: today's demo behaviour
    strict = LocalChain(manual.path, rule=ValidatorRule(min_stake=100.0))
    assert strict.metagraph().validator_uids == (0,) and strict.metagraph().leader_uid == 0
    assert strict.with_hotkey("miner-1").metagraph().rule == ValidatorRule(min_stake=100.0)
    # the chain's permits go to the 64 highest stakes (ties by uid), never to zero stake
    stake = [float(u % 7) for u in range(100)]
    permits = permits_by_stake(range(100), stake)
    assert sum(permits) == 64 and not any(p for p, s in zip(permits, stake) if s == 0)
    assert min(s for p, s in zip(permits, stake) if p) >= max(s for p, s in zip(permits, stake) if not p)
    with pytest.raises(ChainConfigError, match="validator_min_stake"):
        ValidatorRule(min_stake=float("nan"))

