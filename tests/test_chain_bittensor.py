"""BittensorChain's shared core (retries, per-block caches, roles, waits) through the 10.x
adapter, against a fake Subtensor that implements exactly the methods the adapter calls.

The fake takes keyword-only arguments with the bittensor 10.x names, so a call with a
wrong name or a positional argument fails loudly. Its return values are plain stand-ins;
tests/test_chain_bittensor_sdk10.py and _sdk11.py run each adapter against the SDKs' real types.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import types

import numpy as np
import pytest

from templar_jax.chain import (
    BittensorChain,
    BlockNotProducedError,
    Chain,
    ChainTimeoutError,
    ChainTransactionError,
    ChainUnavailableError,
    CommitmentTooLongError,
    InvalidWeightsError,
    NotRegisteredError,
    ValidatorRule,
)
from templar_jax.chain.bittensor_sdk10 import Sdk10Adapter

NETUID = 3
HOTKEYS = ["5Validator", "5Miner0", "5Miner1", "5Miner2"]
SECRET = "acct" * 8 + "keyid" * 6 + "xx" + "S3CR3T" * 10 + "3CR3"  # 128 chars
GENESIS = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


class FakeSubtensor:
    def __init__(self, block: int = 1000) -> None:
        self.block = block
        self.ticking = True  # every head read moves the chain one block
        self.stake = [5000.0, 0.0, 10.0, 0.0]
        self.permit = [True, False, True, False]
        self.calls: list[tuple[str, dict]] = []
        self.fail: dict[str, list[BaseException]] = {}
        self.closed = False
        self.commitments = {"5Miner0": "commit-0", "5Miner2": "commit-2", "5Stranger": "x"}
        self.extrinsic_result = types.SimpleNamespace(success=True, message="Success")

    def _enter(self, name: str, **kwargs) -> None:
        self.calls.append((name, kwargs))
        pending = self.fail.get(name)
        if pending:
            raise pending.pop(0)

    def get_current_block(self) -> int:
        self._enter("get_current_block")
        self.block += int(self.ticking)
        return self.block

    def get_timestamp(self, *, block=None):
        self._enter("get_timestamp", block=block)
        return GENESIS + dt.timedelta(seconds=12 * block)

    def get_block_hash(self, *, block=None):
        self._enter("get_block_hash", block=block)
        return f"0x{block:064x}"

    def metagraph(self, *, netuid, block=None):
        self._enter("metagraph", netuid=netuid, block=block)
        return types.SimpleNamespace(
            uids=np.arange(4, dtype=np.int64),
            hotkeys=list(HOTKEYS),
            S=np.array(self.stake, dtype=np.float32),
            I=np.array([0.0, 0.5, 0.25, 0.25], dtype=np.float32),
            validator_permit=np.array(self.permit),
            block=np.int64(block),
        )

    def get_uid_for_hotkey_on_subnet(self, *, hotkey_ss58, netuid):
        self._enter("get_uid_for_hotkey_on_subnet", hotkey_ss58=hotkey_ss58, netuid=netuid)
        return HOTKEYS.index(hotkey_ss58) if hotkey_ss58 in HOTKEYS else None

    def set_commitment(self, *, wallet, netuid, data):
        self._enter("set_commitment", wallet=wallet, netuid=netuid, data=data)
        return self.extrinsic_result

    def get_all_commitments(self, *, netuid, block=None):
        self._enter("get_all_commitments", netuid=netuid, block=block)
        return dict(self.commitments)

    def set_weights(self, *, wallet, netuid, uids, weights):
        self._enter("set_weights", wallet=wallet, netuid=netuid, uids=uids, weights=weights)
        return self.extrinsic_result

    def weights(self, *, netuid, block=None):
        self._enter("weights", netuid=netuid, block=block)
        return [(0, [(1, 30000), (2, 10000), (3, 0)]), (2, [(0, 0)])]

    def close(self) -> None:
        self.closed = True


ADAPTER = Sdk10Adapter()


def _wallet(ss58: str = "5Validator"):
    return types.SimpleNamespace(hotkey=types.SimpleNamespace(ss58_address=ss58))


@pytest.fixture
def fake():
    return FakeSubtensor()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def chain(fake, sleeps):
    return BittensorChain(NETUID, subtensor=fake, wallet=_wallet(), blocks_per_window=100,
                          sleep=sleeps.append, backoff_s=0.5, adapter=ADAPTER)


def _names(fake):
    return [name for name, _ in fake.calls]


def test_is_a_chain(chain):
    assert isinstance(chain, Chain)
    assert chain.hotkey == "5Validator"


def test_blocks_windows_and_timestamps(chain, fake):
    assert chain.current_block() == 1001
    assert chain.current_window() == 10  # block 1002 // 100
    assert chain.window_of(1099) == 10 and chain.window_of(1100) == 11
    ts = chain.block_timestamp(500)
    assert ts == GENESIS.timestamp() + 6000
    assert fake.calls[-1] == ("get_timestamp", {"block": 500})
    n_calls = len(fake.calls)
    assert chain.block_timestamp(500) == ts  # cached: a past block's time never changes
    assert len(fake.calls) == n_calls


def test_naive_and_millisecond_timestamps_are_utc_seconds(fake):
    fake.get_timestamp = lambda *, block=None: dt.datetime(2025, 1, 1)  # naive
    chain = BittensorChain(NETUID, subtensor=fake, adapter=ADAPTER)
    assert chain.block_timestamp(1) == GENESIS.timestamp()
    fake.get_timestamp = lambda *, block=None: 1_735_689_600_000  # Timestamp.Now in ms
    assert chain.block_timestamp(2) == GENESIS.timestamp()


def test_metagraph_maps_arrays(chain, fake):
    mg = chain.metagraph()
    assert fake.calls[-1] == ("metagraph", {"netuid": NETUID, "block": 1001})  # the head's
    assert mg.uids == (0, 1, 2, 3) and all(type(u) is int for u in mg.uids)
    assert mg.hotkeys == tuple(HOTKEYS)
    assert mg.stake == (5000.0, 0.0, 10.0, 0.0) and all(type(s) is float for s in mg.stake)
    assert mg.incentive == (0.0, 0.5, 0.25, 0.25)
    assert mg.leader_uid == 0 and mg.block == 1001
    assert mg.validator_permit == (True, False, True, False)


def test_my_uid_is_looked_up_once(chain, fake):
    assert chain.my_uid() == 0
    assert chain.my_uid() == 0
    assert _names(fake).count("get_uid_for_hotkey_on_subnet") == 1
    assert fake.calls[0][1] == {"hotkey_ss58": "5Validator", "netuid": NETUID}


def test_unregistered_and_read_only(fake):
    stranger = BittensorChain(NETUID, subtensor=fake, wallet=_wallet("5Nobody"), adapter=ADAPTER)
    with pytest.raises(NotRegisteredError):
        stranger.my_uid()
    read_only = BittensorChain(NETUID, subtensor=fake, adapter=ADAPTER)
    assert read_only.hotkey is None
    for action in (read_only.my_uid, lambda: read_only.commit("x"),
                   lambda: read_only.set_weights([1], [1.0])):
        with pytest.raises(NotRegisteredError):
            action()
    assert "set_commitment" not in _names(fake) and "set_weights" not in _names(fake)


def test_commit_passes_wallet_netuid_and_data(chain, fake):
    chain.commit(SECRET)
    name, kwargs = fake.calls[-1]
    assert name == "set_commitment"
    assert kwargs == {"wallet": chain._wallet, "netuid": NETUID, "data": SECRET}
    with pytest.raises(CommitmentTooLongError):
        chain.commit(SECRET + "!")
    assert _names(fake).count("set_commitment") == 1


def test_refused_extrinsics_raise(chain, fake):
    fake.extrinsic_result = types.SimpleNamespace(success=False, message="CommitmentSetRateLimitExceeded")
    with pytest.raises(ChainTransactionError, match="RateLimit"):
        chain.commit("x")
    fake.extrinsic_result = (False, "too soon")  # 9.x style tuple
    with pytest.raises(ChainTransactionError, match="too soon"):
        chain.set_weights([1], [1.0])
    fake.extrinsic_result = True  # bare bool
    chain.commit("x")


def test_commitments_map_hotkeys_to_uids(chain, fake):
    assert chain.commitments() == {1: "commit-0", 3: "commit-2"}  # the stranger is dropped
    assert ("get_all_commitments", {"netuid": NETUID, "block": fake.block}) in fake.calls

    def parse(raw: str) -> int:
        if raw == "commit-2":
            raise ValueError("rejected")
        return len(raw)

    assert chain.parsed_commitments(parse) == {1: 8}


def test_set_weights_validates_normalizes_and_maps(chain, fake):
    chain.set_weights([3, 1], [1.0, 3.0])
    name, kwargs = fake.calls[-1]
    assert name == "set_weights"
    assert kwargs["wallet"] is chain._wallet and kwargs["netuid"] == NETUID
    assert kwargs["uids"] == [1, 3]
    assert kwargs["weights"] == pytest.approx([0.75, 0.25])
    for uids, weights in (([9], [1.0]), ([1], [float("nan")]), ([1, 2], [0.0, 0.0]), ([1], [-1.0])):
        with pytest.raises(InvalidWeightsError):
            chain.set_weights(uids, weights)
    assert _names(fake).count("set_weights") == 1


def test_weights_are_normalized_per_validator(chain, fake):
    assert chain.weights() == {0: {1: 0.75, 2: 0.25}}  # uid 2's all-zero row is dropped
    assert fake.calls[-1] == ("weights", {"netuid": NETUID, "block": fake.block})


def test_transient_errors_are_retried_with_backoff(chain, fake, sleeps):
    fake.fail["get_current_block"] = [ConnectionError("socket closed"), TimeoutError("slow")]
    assert chain.current_block() == 1001
    assert _names(fake).count("get_current_block") == 3
    assert sleeps == [0.5, 1.0]

    class ConnectionClosedError(Exception):  # shaped like websockets' exception name
        pass

    fake.fail["set_commitment"] = [ConnectionClosedError("1006")]
    chain.commit("retry me")
    assert _names(fake).count("set_commitment") == 2


def test_retries_give_up_with_typed_error(fake, sleeps):
    chain = BittensorChain(NETUID, subtensor=fake, sleep=sleeps.append, max_attempts=3,
                           backoff_s=1.0, max_backoff_s=1.5, adapter=ADAPTER)
    fake.fail["metagraph"] = [ConnectionError("down")] * 5
    with pytest.raises(ChainUnavailableError, match="3 times"):
        chain.metagraph()
    assert sleeps == [1.0, 1.5]


def test_non_transient_errors_are_not_retried(chain, fake, sleeps):
    fake.fail["get_all_commitments"] = [KeyError("decode bug")]
    with pytest.raises(KeyError):
        chain.commitments()
    assert _names(fake).count("get_all_commitments") == 1 and sleeps == []


def test_reconnects_through_factory(sleeps):
    made: list[FakeSubtensor] = []

    def factory():
        sub = FakeSubtensor()
        if not made:
            sub.fail["get_current_block"] = [ConnectionError("dropped")]
        made.append(sub)
        return sub

    chain = BittensorChain(NETUID, subtensor_factory=factory, sleep=sleeps.append, adapter=ADAPTER)
    assert made == []  # connects lazily
    assert chain.current_block() == 1001
    assert len(made) == 2 and made[0].closed and not made[1].closed


def test_wait_for_block(chain, fake, sleeps):
    assert chain.wait_for_block(1004, timeout=30) == 1004
    assert len(sleeps) == 3
    fake.block = 0
    with pytest.raises(ChainTimeoutError):
        chain.wait_for_block(10**9, timeout=0.05)


def test_secrets_never_logged(fake, sleeps, caplog):
    chain = BittensorChain(NETUID, subtensor=fake, wallet=_wallet(), sleep=sleeps.append,
                           adapter=ADAPTER)
    caplog.set_level(logging.DEBUG)
    fake.fail["set_commitment"] = [ConnectionError(f"failed sending {SECRET}")]
    chain.commit(SECRET)
    fake.extrinsic_result = types.SimpleNamespace(success=False, message="Bad")
    with pytest.raises(ChainTransactionError) as info:
        chain.commit(SECRET)
    assert "S3CR3T" not in caplog.text and "S3CR3T" not in str(info.value)
    assert "128 bytes" in caplog.text


@pytest.mark.skipif(importlib.util.find_spec("bittensor") is not None,
                    reason="bittensor is installed here")
def test_missing_sdk_gives_clear_error():
    with pytest.raises(ChainUnavailableError, match=r"templar-jax\[chain\]"):
        BittensorChain(NETUID)


def test_metagraph_and_commitments_are_read_once_per_block(chain, fake):
    fake.ticking = False
    fake.commitments["5Miner1"] = "x" * 129  # longer than the chain accepts: dropped
    fake.commitments["5Validator"] = "lone \ud800 surrogate"  # not UTF-8: dropped, no UnicodeError
    first = chain.commitments()
    assert first == {1: "commit-0", 3: "commit-2"}
    assert chain.commitments() == first and chain.metagraph().uids == (0, 1, 2, 3)
    assert _names(fake).count("metagraph") == 1 and _names(fake).count("get_all_commitments") == 1
    fake.block += 1  # a new block: both are read again, at that block
    chain.commitments()
    assert ("get_all_commitments", {"netuid": NETUID, "block": 1001}) in fake.calls
    assert _names(fake).count("metagraph") == 2 and _names(fake).count("get_all_commitments") == 2
    chain.commit("mine")  # our own commit invalidates the cached read
    chain.commitments()
    assert _names(fake).count("get_all_commitments") == 3


def test_roles_follow_the_stake_threshold_and_permit(fake):
    fake.stake = [5000.0, 20.0, 1500.0, 0.0]  # uid 1: a miner holding stake, without a permit
    fake.permit = [True, False, True, True]  # uid 3: a permit without stake
    default = BittensorChain(NETUID, subtensor=fake, adapter=ADAPTER).metagraph()
    assert default.validator_uids == (0, 2) and default.leader_uid == 0
    strict = BittensorChain(NETUID, subtensor=fake, adapter=ADAPTER,
                            rule=ValidatorRule(min_stake=2000.0)).metagraph()
    assert strict.validator_uids == (0,)
    no_permit = BittensorChain(NETUID, subtensor=fake, adapter=ADAPTER,
                               rule=ValidatorRule(require_permit=False)).metagraph()
    assert no_permit.validator_uids == (0, 2, 1)  # today's "stake > 0"
    fake.stake = [0.0, 0.0, 0.0, 0.0]
    assert BittensorChain(NETUID, subtensor=fake, adapter=ADAPTER).metagraph().leader_uid is None


def test_block_hash_is_cached_and_refuses_future_blocks(chain, fake):
    fake.ticking = False
    assert chain.block_hash(900) == f"0x{900:064x}"
    assert chain.block_hash(900) == f"0x{900:064x}"
    assert _names(fake).count("get_block_hash") == 1
    for future in (fake.block + 1, -1):
        with pytest.raises(BlockNotProducedError):
            chain.block_hash(future)
    assert _names(fake).count("get_block_hash") == 1


def test_wait_polls_a_bounded_number_of_times(fake, sleeps):
    chain = BittensorChain(NETUID, subtensor=fake, sleep=sleeps.append, adapter=ADAPTER,
                           block_time_s=12.0)
    fake.ticking = False

    def sleep(seconds):  # the chain moves with the time slept
        sleeps.append(seconds)
        fake.block += int(seconds // 12) or (1 if len(sleeps) % 4 == 0 else 0)

    chain._sleep = sleep
    assert chain.wait_for_block(1010, timeout=None) >= 1010
    assert sleeps[0] == 9 * 12.0  # asleep until the block is due, not polling meanwhile
    assert all(s >= 3.0 for s in sleeps) and len(sleeps) <= 6


class _Subscribing(Sdk10Adapter):
    """The 10.x calls plus a subscription, to drive the core's subscription path."""

    subscribes = True

    def __init__(self, outcome):
        self.outcome = outcome

    def wait_for_block(self, sub, block, timeout):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def test_subscription_wait_timeout_and_fallback(fake, sleeps):
    def chain_with(outcome):
        return BittensorChain(NETUID, subtensor=fake, sleep=sleeps.append,
                              adapter=_Subscribing(outcome))

    assert chain_with(1234).wait_for_block(1234, timeout=5) == 1234
    assert _names(fake) == []  # nothing polled
    with pytest.raises(ChainTimeoutError):
        chain_with(TimeoutError()).wait_for_block(10**9, timeout=5)
    lost = chain_with(ConnectionError("subscription dropped"))
    assert lost.wait_for_block(1002, timeout=30) == 1002  # fell back to polling
    assert _names(fake).count("get_current_block") == 2
    with pytest.raises(KeyError):
        chain_with(KeyError("bug")).wait_for_block(1, timeout=5)


def test_future_block_times_are_estimated_at_the_run_block_time(fake):
    fake.ticking = False  # head 1000
    chain = BittensorChain(NETUID, subtensor=fake, adapter=ADAPTER, block_time_s=0.25)
    assert chain.block_timestamp(1040) == GENESIS.timestamp() + 12 * 1000 + 40 * 0.25
    assert [kw for name, kw in fake.calls if name == "get_timestamp"] == [{"block": 1000}]
    fake.block = 1040  # produced now: the chain's own time, cached from here on
    assert chain.block_timestamp(1040) == GENESIS.timestamp() + 12 * 1040
