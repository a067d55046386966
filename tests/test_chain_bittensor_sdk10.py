"""BittensorChain's 10.x adapter against a fake node that answers with bittensor 10.x's real types.

The node returns what 10.x's `Subtensor` returns: a real `bittensor.core.metagraph.Metagraph`
filled by 10.x's own `_set_metagraph_attributes` from real `NeuronInfoLite` rows, real
`ExtrinsicResponse`s, UTC `datetime`s, u16 weight rows; the wallet is a real
`bittensor_wallet.Wallet` with a dev hotkey on disk. Every call the adapter makes is bound
against the real `Subtensor` method's signature, so a renamed or missing argument fails here.

Needs 10.x installed: in an environment without it, the one test below reruns this file in
`.sdk-venvs/bt10` (created by `python tests/bittensor_sdks.py 10`, or skipped without it).
"""

from __future__ import annotations

import datetime as dt
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bittensor_sdks  # noqa: E402

SDK_HERE, needs_10, test_in_the_10x_venv = bittensor_sdks.gate(10, __file__)

if SDK_HERE:
    from bittensor.core.chain_data import AxonInfo, NeuronInfoLite
    from bittensor.core.metagraph import Metagraph as SdkMetagraph
    from bittensor.core.subtensor import Subtensor
    from bittensor.core.types import ExtrinsicResponse
    from bittensor.utils.balance import Balance
    from bittensor_wallet import Keypair, Wallet

    from templar_jax.chain import (
        BittensorChain,
        ChainTransactionError,
        InvalidWeightsError,
        ValidatorRule,
    )

NETUID = 3
GENESIS = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
DEV_URIS = ["//Alice", "//Bob", "//Charlie", "//Dave"]


class Node10:
    """The chain as 10.x's Subtensor presents it; each call is checked against the real signature."""

    def __init__(self, hotkeys: list[str], block: int = 5000):
        self.hotkeys = hotkeys
        self.block = block
        self.stake = [5000.0, 20.0, 1500.0, 0.0]  # uid 1: a miner holding stake, no permit
        self.permit = [True, False, True, False]
        self.commitments = {hotkeys[1]: "file:/tmp/miner-1", hotkeys[2]: "x" * 129, "5Gone": "file:/x"}
        self.response = ExtrinsicResponse(success=True, message="Success")
        self.calls: list[tuple[str, dict]] = []

    def _enter(self, name: str, kwargs: dict) -> None:
        inspect.signature(getattr(Subtensor, name)).bind(None, **kwargs)  # a wrong name raises
        self.calls.append((name, kwargs))

    def get_current_block(self):
        self._enter("get_current_block", {})
        return self.block

    def get_timestamp(self, **kw):
        self._enter("get_timestamp", kw)
        return GENESIS + dt.timedelta(seconds=12 * kw["block"])

    def get_block_hash(self, **kw):
        self._enter("get_block_hash", kw)
        return "0x" + f"{kw['block']:x}".rjust(64, "0")

    def metagraph(self, **kw):
        self._enter("metagraph", kw)
        mg = SdkMetagraph(netuid=kw["netuid"], network="local", lite=True, sync=False)
        mg.neurons = [
            NeuronInfoLite(
                hotkey=hk, coldkey=hk, uid=uid, netuid=kw["netuid"], active=1,
                stake=Balance.from_tao(s), stake_dict={}, total_stake=Balance.from_tao(s),
                emission=0.0, incentive=[0.0, 0.5, 0.25, 0.25][uid], consensus=0.0,
                validator_trust=0.0, dividends=0.0, last_update=0, validator_permit=p,
                prometheus_info=None,
                axon_info=AxonInfo(version=0, ip="0.0.0.0", port=0, ip_type=4, hotkey=hk, coldkey=hk),
            )
            for uid, (hk, s, p) in enumerate(zip(self.hotkeys, self.stake, self.permit))
        ]
        mg._set_metagraph_attributes(kw["block"])  # 10.x's own code fills the arrays
        mg.total_stake = mg.stake = mg._create_tensor([n.total_stake.tao for n in mg.neurons],
                                                      dtype=mg._dtype_registry["float32"])
        return mg

    def get_uid_for_hotkey_on_subnet(self, **kw):
        self._enter("get_uid_for_hotkey_on_subnet", kw)
        return self.hotkeys.index(kw["hotkey_ss58"]) if kw["hotkey_ss58"] in self.hotkeys else None

    def set_commitment(self, **kw):
        self._enter("set_commitment", kw)
        return self.response

    def get_all_commitments(self, **kw):
        self._enter("get_all_commitments", kw)
        return dict(self.commitments)

    def set_weights(self, **kw):
        self._enter("set_weights", kw)
        return self.response

    def weights(self, **kw):
        self._enter("weights", kw)
        return [(0, [(1, 49151), (2, 16384)]), (2, [(1, 65535)])]


@pytest.fixture
def wallets(tmp_path):
    out = []
    for i, uri in enumerate(DEV_URIS):
        wallet = Wallet(name=f"w{i}", hotkey="h", path=str(tmp_path))
        wallet.set_hotkey(Keypair.create_from_uri(uri), encrypt=False, overwrite=True)
        out.append(wallet)
    return out


@pytest.fixture
def node(wallets):
    return Node10([w.hotkey.ss58_address for w in wallets])


@pytest.fixture
def chain(node, wallets):
    return BittensorChain(NETUID, subtensor=node, wallet=wallets[0], blocks_per_window=100,
                          sleep=lambda s: None)


@needs_10
def test_installed_10x_picks_its_adapter_and_loads_the_wallet(node, wallets, tmp_path):
    chain = BittensorChain(NETUID, subtensor=node, wallet_name="w2", wallet_hotkey="h",
                           wallet_path=str(tmp_path))
    assert chain.adapter.generation == 10 and not chain.adapter.subscribes
    assert chain.hotkey == wallets[2].hotkey.ss58_address
    assert chain.my_uid() == 2


@needs_10
def test_blocks_time_and_hash(chain, node):
    assert chain.current_block() == 5000 and chain.current_window() == 50
    assert chain.block_timestamp(100) == GENESIS.timestamp() + 1200
    assert chain.block_hash(4999).endswith("1387") and len(chain.block_hash(4999)) == 66
    node.block = 5003
    assert chain.wait_for_block(5003, timeout=1) == 5003


@needs_10
def test_metagraph_from_the_real_10x_class(chain, node):
    mg = chain.metagraph()
    assert ("metagraph", {"netuid": NETUID, "block": 5000}) in node.calls
    assert mg.block == 5000 and mg.uids == (0, 1, 2, 3)
    assert mg.hotkeys == tuple(node.hotkeys)
    assert mg.stake == pytest.approx((5000.0, 20.0, 1500.0, 0.0))
    assert mg.incentive == pytest.approx((0.0, 0.5, 0.25, 0.25))
    assert mg.validator_permit == (True, False, True, False)
    assert all(type(u) is int for u in mg.uids) and all(type(s) is float for s in mg.stake)
    assert mg.validator_uids == (0, 2) and mg.leader_uid == 0  # the staked miner stays a miner
    strict = BittensorChain(NETUID, subtensor=node, rule=ValidatorRule(min_stake=2000)).metagraph()
    assert strict.validator_uids == (0,)


@needs_10
def test_commitments_and_commit(chain, node, wallets):
    assert chain.commitments() == {1: "file:/tmp/miner-1"}  # too long and unregistered dropped
    assert ("get_all_commitments", {"netuid": NETUID, "block": 5000}) in node.calls
    chain.commit("file:/tmp/validator")
    assert node.calls[-1] == ("set_commitment", {"wallet": wallets[0], "netuid": NETUID,
                                                 "data": "file:/tmp/validator"})
    node.response = ExtrinsicResponse(success=False, message="SpaceLimitExceeded")
    with pytest.raises(ChainTransactionError, match="SpaceLimitExceeded"):
        chain.commit("file:/tmp/validator")


@needs_10
def test_weights_round_trip(chain, node, wallets):
    chain.set_weights([2, 1], [1.0, 3.0])
    name, kwargs = node.calls[-1]
    assert name == "set_weights" and kwargs["wallet"] is wallets[0]
    assert kwargs["uids"] == [1, 2] and kwargs["weights"] == pytest.approx([0.75, 0.25])
    with pytest.raises(InvalidWeightsError):
        chain.set_weights([9], [1.0])
    assert chain.weights() == {0: pytest.approx({1: 0.75, 2: 0.25}, abs=1e-4), 2: {1: 1.0}}
