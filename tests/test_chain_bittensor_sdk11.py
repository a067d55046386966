"""BittensorChain's 11.x adapter against a fake node that answers with bittensor 11.x's real types.

The node is shaped like 11.x's blocking `bittensor.Subtensor` (the `block` property, namespaces
`subnets`, `neurons`, `weights`) and returns what it returns: real `Metagraph` /
`MetagraphNeuron` with `Balance` stakes, `NeuronCommitment`s, `BlockInfo`, `BlockHeader`,
`ExtrinsicResult`; writes receive the real `SetWeights` intent and the real generated
`Commitments.set_commitment` call; refusals are the real `ChainError` with its code. Facade
calls are bound against the real `Subtensor` signatures and namespace reads checked against
11.x's read registry, so a renamed argument fails here. The wallet is a real `bittensor.Wallet`
with a dev hotkey on disk. The reads also run end to end through the real `bittensor.Subtensor`
over a fake `Substrate` (11.x's own test seam), so 11.x's namespaces, block pinning and
decoding are exercised too; signing and submission are not (no live node here).

Needs 11.x installed: in an environment without it, the one test below reruns this file in
`.sdk-venvs/bt11` (created by `python tests/bittensor_sdks.py 11`, or skipped without it).
"""

from __future__ import annotations

import datetime as dt
import inspect
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bittensor_sdks  # noqa: E402

SDK_HERE, needs_11, test_in_the_11x_venv = bittensor_sdks.gate(11, __file__)

if SDK_HERE:
    import bittensor as bt
    from bittensor import namespaces
    from bittensor.reads.base import REGISTRY

    from templar_jax.chain import (
        BittensorChain,
        ChainTimeoutError,
        ChainTransactionError,
        ValidatorRule,
    )

NETUID = 3
GENESIS = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def _bind(method, *args, **kwargs):
    inspect.signature(method).bind(None, *args, **kwargs)  # a wrong name or arity raises


def _read(name: str, *args, **kwargs):
    """A registry read (11.x's dynamic namespace methods) takes its params plus `block=`."""
    params = list(REGISTRY[name].params)
    assert len(args) <= len(params) and set(kwargs) <= set(params[len(args):]) | {"block"}


class Node11:
    """The chain as 11.x's blocking Subtensor presents it."""

    def __init__(self, hotkeys: list[str], block: int = 7000):
        self.hotkeys = hotkeys
        self.head = block
        self.stake = [5000.0, 20.0, 1500.0, 0.0]  # uid 1: a miner holding stake, no permit
        self.permit = [True, False, True, False]
        self.values = {hotkeys[1]: "file:/tmp/miner-1", hotkeys[2]: "x" * 129, "5Gone": "file:/x"}
        self.result = bt.ExtrinsicResult(success=True, message="Success")
        self.refusal: Exception | None = None
        self.wait: object = None
        self.calls: list[tuple[str, tuple, dict]] = []
        self.subnets = types.SimpleNamespace(metagraph=self._metagraph, commitments=self._commitments)
        self.neurons = types.SimpleNamespace(uid=self._uid)
        self.weights = types.SimpleNamespace(weights=self._weights)

    def _log(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))

    @property
    def block(self) -> int:
        self._log("block")
        return self.head

    def timestamp(self, *args, **kwargs):
        _bind(bt.Subtensor.timestamp, *args, **kwargs)
        self._log("timestamp", *args, **kwargs)
        return GENESIS + dt.timedelta(seconds=12 * kwargs["block"])

    def block_info(self, *args, **kwargs):
        _bind(bt.Subtensor.block_info, *args, **kwargs)
        number = args[0]
        return bt.BlockInfo(number=number, hash="0x" + f"{number:x}".rjust(64, "0"),
                            timestamp=GENESIS, explorer_url=None, header={}, extrinsics=[])

    def wait_for_block(self, *args, **kwargs):
        _bind(bt.Subtensor.wait_for_block, *args, **kwargs)
        self._log("wait_for_block", *args, **kwargs)
        if isinstance(self.wait, BaseException):
            raise self.wait
        return bt.BlockHeader(number=max(args[0], self.head), parent_hash="0x00", raw={})

    def submit_call(self, *args, **kwargs):
        _bind(bt.Subtensor.submit_call, *args, **kwargs)
        self._log("submit_call", *args, **kwargs)
        return self.result

    def execute(self, *args, **kwargs):
        _bind(bt.Subtensor.execute, *args, **kwargs)
        self._log("execute", *args, **kwargs)
        if self.refusal is not None:
            raise self.refusal
        return self.result

    def _metagraph(self, *args, **kwargs):
        _bind(namespaces.Subnets.metagraph, *args, **kwargs)
        self._log("metagraph", *args, **kwargs)
        neurons = [
            bt.MetagraphNeuron(
                uid=uid, hotkey=hk, coldkey=hk, active=True, validator_permit=p, last_update=0,
                block_at_registration=0, rank=0.0, trust=0.0, consensus=0.0,
                incentive=[0.0, 0.5, 0.25, 0.25][uid], dividends=0.0, pruning_score=0.0,
                emission=bt.Balance(0, NETUID), alpha_stake=bt.Balance(int(s * 1e9), NETUID),
                tao_stake=bt.Balance(0), total_stake=bt.Balance(int(s * 1e9), NETUID),
                axon=None, identity=None, commitment=None,
            )
            for uid, (hk, s, p) in enumerate(zip(self.hotkeys, self.stake, self.permit))
        ]
        return bt.Metagraph(
            netuid=NETUID, mechid=0, name="templar", symbol="γ", block=kwargs["block"], tempo=360,
            last_step=0, blocks_since_last_step=0, owner_hotkey="", owner_coldkey="",
            network_registered_at=0, num_uids=len(neurons), max_uids=256, price=None,
            moving_price=None, identity=None, neurons=neurons[::-1],  # the adapter sorts by uid
            commitments={}, unregistered_commitments={}, raw={},
        )

    def _commitments(self, *args, **kwargs):
        _bind(namespaces.Subnets.commitments, *args, **kwargs)
        self._log("commitments", *args, **kwargs)
        out = {hk: _commitment(hk, kwargs["block"], data) for hk, data in self.values.items()}
        out[self.hotkeys[3]] = _commitment(self.hotkeys[3], kwargs["block"], "", encrypted=True)
        return out

    def _uid(self, *args, **kwargs):
        _read("uid", *args, **kwargs)
        return self.hotkeys.index(args[0]) if args[0] in self.hotkeys else None

    def _weights(self, *args, **kwargs):
        _read("weights", *args, **kwargs)
        self._log("weights", *args, **kwargs)
        return {0: {1: 0.75, 2: 0.25}, 2: {1: 1.0}}


def _commitment(hotkey, block, data, encrypted=False):
    return bt.NeuronCommitment(hotkey=hotkey, netuid=NETUID, uid=None, block=block - 5,
                               queried_block=block, deposit=bt.Balance(0), data=data,
                               encrypted=encrypted, reveal_round=123 if encrypted else None,
                               revealed=[], fields=[])


@pytest.fixture
def wallets(tmp_path):
    out = []
    for i in range(4):
        wallet = bt.Wallet(name=f"w{i}", hotkey="h", path=str(tmp_path))
        wallet.regenerate_hotkey(seed="0x" + bytes([i + 1]).hex() * 32, overwrite=True, suppress=True)
        out.append(wallet)
    return out


@pytest.fixture
def node(wallets):
    return Node11([w.hotkey.ss58_address for w in wallets])


@pytest.fixture
def chain(node, wallets):
    return BittensorChain(NETUID, subtensor=node, wallet=wallets[0], blocks_per_window=100,
                          sleep=lambda s: None)


@needs_11
def test_installed_11x_picks_its_adapter_and_loads_the_wallet(node, wallets, tmp_path):
    chain = BittensorChain(NETUID, subtensor=node, wallet_name="w2", wallet_hotkey="h",
                           wallet_path=str(tmp_path))
    assert chain.adapter.generation == 11 and chain.adapter.subscribes
    assert chain.hotkey == wallets[2].hotkey.ss58_address
    assert chain.my_uid() == 2


@needs_11
def test_blocks_time_hash_and_subscription(chain, node):
    assert chain.current_block() == 7000 and chain.current_window() == 70
    assert chain.block_timestamp(100) == GENESIS.timestamp() + 1200
    assert chain.block_hash(6999) == "0x" + f"{6999:x}".rjust(64, "0")
    assert chain.wait_for_block(7000, timeout=5) == 7000
    assert node.calls[-1] == ("wait_for_block", (7000,), {"timeout": 5})  # no polling
    node.wait = TimeoutError()
    with pytest.raises(ChainTimeoutError):
        chain.wait_for_block(7100, timeout=1)
    node.wait = bt.ChainError("Connection lost while waiting for blocks")  # the stream died
    node.head = 7002
    assert chain.wait_for_block(7002, timeout=5) == 7002  # fell back to polling `block`
    assert node.calls[-1] == ("block", (), {})


@needs_11
def test_metagraph_from_the_real_11x_classes(chain, node):
    mg = chain.metagraph()
    assert ("metagraph", (NETUID,), {"block": 7000, "commitments": False}) in node.calls
    assert mg.block == 7000 and mg.uids == (0, 1, 2, 3)
    assert mg.hotkeys == tuple(node.hotkeys)
    assert mg.stake == pytest.approx((5000.0, 20.0, 1500.0, 0.0))
    assert mg.incentive == (0.0, 0.5, 0.25, 0.25)
    assert mg.validator_permit == (True, False, True, False)
    assert mg.validator_uids == (0, 2) and mg.leader_uid == 0  # the staked miner stays a miner
    strict = BittensorChain(NETUID, subtensor=node, rule=ValidatorRule(min_stake=2000)).metagraph()
    assert strict.validator_uids == (0,)


@needs_11
def test_commitments_and_commit(chain, node, wallets):
    # too long, unregistered and still-sealed entries are dropped
    assert chain.commitments() == {1: "file:/tmp/miner-1"}
    assert ("commitments", (NETUID,), {"block": 7000}) in node.calls
    chain.commit("file:/tmp/validator")
    name, (call, wallet), kwargs = node.calls[-1]
    assert name == "submit_call" and wallet is wallets[0] and kwargs == {"signer": "hotkey"}
    assert (call.module, call.function) == ("Commitments", "set_commitment")
    assert call.params == {"netuid": NETUID, "info": {"fields": [[{"Raw19": b"file:/tmp/validator"}]]}}
    node.result = bt.ExtrinsicResult(success=False, message="SpaceLimitExceeded")
    with pytest.raises(ChainTransactionError, match="SpaceLimitExceeded"):
        chain.commit("file:/tmp/validator")


@needs_11
def test_weights_round_trip(chain, node, wallets):
    chain.set_weights([2, 1], [1.0, 3.0])
    name, (intent, wallet), _ = node.calls[-1]
    assert name == "execute" and isinstance(intent, bt.SetWeights) and wallet is wallets[0]
    assert intent.netuid == NETUID and intent.uids == [1, 2]
    assert intent.weights == pytest.approx([0.75, 0.25])
    assert chain.weights() == {0: {1: 0.75, 2: 0.25}, 2: {1: 1.0}}
    assert ("weights", (NETUID,), {"block": 7000}) in node.calls
    node.refusal = bt.ChainError("rate limited", code="RATE_LIMITED")
    with pytest.raises(ChainTransactionError, match="RATE_LIMITED"):
        chain.set_weights([1], [1.0])
    assert [c[0] for c in node.calls].count("execute") == 2  # a refusal is not retried


@needs_11
def test_connection_errors_retry_policy_errors_do_not(node):
    adapter = BittensorChain(NETUID, subtensor=node).adapter
    assert adapter.is_transient(bt.RpcConnectionError("socket closed"))
    assert not adapter.is_transient(bt.RpcPolicyError("429", status_code=429))
    assert adapter.is_transient(bt.ChainError("Connection lost"))
    assert not adapter.is_transient(bt.ChainError("bad", code="INVALID_ARGUMENT"))


class FakeSubstrate:
    """11.x's own test seam (`Subtensor(substrate=...)`, the `bittensor._substrate.Substrate`
    protocol): decoded storage and runtime-API values, so every read below runs 11.x's real
    facade, namespaces, block pinning and decoding. Writes (signing, submission) are not faked."""

    def __init__(self, hotkeys: list[str], head: int = 7000):
        self.hotkeys, self.head = hotkeys, head
        self.token_symbols: dict[int, str] = {}
        self.commit_fields = {hotkeys[1]: "file:/tmp/miner-1", hotkeys[2]: "x" * 129}
        self.reads: list[tuple] = []

    def balance(self, rao: int, netuid: int = 0):
        return bt.Balance(rao, netuid)

    async def connect(self):
        pass

    async def close(self):
        pass

    async def block_hash(self, block=None):
        return "0x" + f"{self.head if block is None else block:x}".rjust(64, "0")

    async def block_number(self):
        return self.head

    async def finalized_block_number(self):
        return self.head - 2

    async def get_block(self, block_number=None, block_hash=None):
        number = self.head if block_number is None else block_number
        return {"header": {"number": number, "hash": await self.block_hash(number)}, "extrinsics": []}

    async def blocks(self, *, finalized=False):
        for number in range(self.head, self.head + 10):
            yield {"header": {"number": number, "parentHash": "0x00"}}

    async def query(self, module, storage_function, params=None, block_hash=None):
        self.reads.append((module, storage_function, params, block_hash))
        at = int(block_hash, 16) if block_hash else self.head
        if (module, storage_function) == ("Timestamp", "Now"):
            return int((GENESIS.timestamp() + 12 * at) * 1000)
        if (module, storage_function) == ("SubtensorModule", "Uids"):
            return self.hotkeys.index(params[1]) if params[1] in self.hotkeys else None
        return None

    async def query_map(self, module, storage_function, params=None, block_hash=None):
        self.reads.append((module, storage_function, params, block_hash))
        if (module, storage_function) == ("Commitments", "CommitmentOf"):
            # decoded as 11.x's metagraph._field_items reads it: one-key dicts, hex payloads
            return [(hk, {"block": 6990, "deposit": 0,
                          "info": {"fields": [{f"Raw{len(text)}": "0x" + text.encode().hex()}]}})
                    for hk, text in self.commit_fields.items()]
        if (module, storage_function) == ("SubtensorModule", "Uids"):
            return [(hk, uid) for uid, hk in enumerate(self.hotkeys)]
        if (module, storage_function) == ("SubtensorModule", "Weights"):
            return [(0, [(1, 49151), (2, 16383)]), (2, [(1, 65535)])]
        return []

    async def runtime_call(self, api, method, params, block_hash=None):
        self.reads.append((api, method, params, block_hash))
        if (api, method) != ("SubnetInfoRuntimeApi", "get_metagraph"):
            return None
        stake = [5000, 20, 1500, 0]
        return {
            "netuid": params[0], "block": int(block_hash, 16), "tempo": 360, "last_step": 0,
            "blocks_since_last_step": 0, "owner_hotkey": "", "owner_coldkey": "",
            "network_registered_at": 0, "hotkeys": list(self.hotkeys), "coldkeys": list(self.hotkeys),
            "validator_permit": [True, False, True, False],
            "incentives": [0, 32768, 16384, 16383],  # PerU16
            "total_stake": [s * 10**9 for s in stake],  # rao
        }

    async def constant(self, module, name):
        return None


@pytest.fixture
def real_subtensor(wallets):
    substrate = FakeSubstrate([w.hotkey.ss58_address for w in wallets])
    sub = bt.Subtensor("local", substrate=substrate)
    yield sub, substrate
    sub.close()


@needs_11
def test_reads_through_the_real_11x_subtensor(real_subtensor, wallets):
    sub, substrate = real_subtensor
    chain = BittensorChain(NETUID, subtensor=sub, wallet=wallets[2], blocks_per_window=100)
    assert chain.current_block() == 7000 and chain.my_uid() == 2
    assert chain.block_timestamp(100) == GENESIS.timestamp() + 1200
    assert chain.block_hash(6999) == "0x" + f"{6999:x}".rjust(64, "0")
    assert chain.wait_for_block(7003, timeout=5) == 7003  # the SDK's block subscription
    mg = chain.metagraph()
    assert mg.block == 7000 and mg.uids == (0, 1, 2, 3) and mg.hotkeys == tuple(substrate.hotkeys)
    assert mg.stake == (5000.0, 20.0, 1500.0, 0.0)
    assert mg.incentive == pytest.approx((0.0, 0.5, 0.25, 0.25), abs=1e-4)
    assert mg.validator_permit == (True, False, True, False) and mg.validator_uids == (0, 2)
    head_hash = "0x" + f"{7000:x}".rjust(64, "0")
    assert ("SubnetInfoRuntimeApi", "get_metagraph", [NETUID], head_hash) in substrate.reads
    assert chain.commitments() == {1: "file:/tmp/miner-1"}  # 129 bytes: dropped
    assert ("Commitments", "CommitmentOf", [NETUID], head_hash) in substrate.reads
    assert chain.weights() == {0: pytest.approx({1: 0.75, 2: 0.25}, abs=1e-4), 2: {1: 1.0}}
    n_reads = len(substrate.reads)
    chain.metagraph(), chain.commitments()  # the same block: nothing read again
    assert len(substrate.reads) == n_reads
