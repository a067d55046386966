"""The `SdkAdapter` of bittensor 10.x (>= 10.5): the classic blocking `Subtensor`.

Methods used, all with keyword arguments: get_current_block(), get_timestamp(block=),
get_block_hash(block=), metagraph(netuid=, block=) (.uids .hotkeys .S .I .validator_permit),
get_uid_for_hotkey_on_subnet(hotkey_ss58=, netuid=), set_commitment(wallet=, netuid=,
data=), get_all_commitments(netuid=, block=), set_weights(wallet=, netuid=, uids=, weights=),
weights(netuid=, block=). 10.x's own wait_for_block has no timeout, so `BittensorChain` polls.
"""

from __future__ import annotations

from typing import Any, Sequence

from templar_jax.chain.bittensor_adapter import (
    check_extrinsic,
    is_transient,
    to_unix_seconds,
)
from templar_jax.chain.errors import ChainUnavailableError
from templar_jax.chain.protocol import Metagraph


class Sdk10Adapter:
    generation = 10
    subscribes = False

    def connect(self, network: str) -> Any:
        import bittensor  # noqa: PLC0415 - optional dependency, extra [chain]

        return bittensor.Subtensor(network=network)

    def make_wallet(self, name: str, hotkey: str, path: str | None) -> Any:
        try:
            from bittensor_wallet import Wallet  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise ChainUnavailableError(
                "BittensorChain needs bittensor-wallet: pip install 'templar-jax[chain]'"
            ) from exc
        kwargs = {"name": name, "hotkey": hotkey}
        if path is not None:
            kwargs["path"] = path
        return Wallet(**kwargs)

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def head(self, sub: Any) -> int:
        return int(sub.get_current_block())

    def timestamp(self, sub: Any, block: int) -> float:
        return to_unix_seconds(sub.get_timestamp(block=block))

    def block_hash(self, sub: Any, block: int) -> str:
        return str(sub.get_block_hash(block=block))

    def neurons(self, sub: Any, netuid: int, block: int) -> Metagraph:
        mg = sub.metagraph(netuid=netuid, block=block)
        return Metagraph(
            block=block,
            uids=tuple(int(u) for u in mg.uids),
            hotkeys=tuple(str(h) for h in mg.hotkeys),
            stake=tuple(float(s) for s in mg.S),
            incentive=tuple(float(i) for i in mg.I),
            validator_permit=tuple(bool(p) for p in mg.validator_permit),
        )

    def uid(self, sub: Any, hotkey: str, netuid: int) -> int | None:
        uid = sub.get_uid_for_hotkey_on_subnet(hotkey_ss58=hotkey, netuid=netuid)
        return None if uid is None else int(uid)

    def commit(self, sub: Any, wallet: Any, netuid: int, data: str) -> None:
        check_extrinsic("set_commitment", sub.set_commitment(wallet=wallet, netuid=netuid, data=data))

    def commitments(self, sub: Any, netuid: int, block: int) -> dict[str, str]:
        raw = sub.get_all_commitments(netuid=netuid, block=block) or {}
        return {str(hk): data for hk, data in raw.items() if isinstance(data, str)}

    def set_weights(self, sub: Any, wallet: Any, netuid: int, uids: Sequence[int],
                    weights: Sequence[float]) -> None:
        result = sub.set_weights(wallet=wallet, netuid=netuid, uids=list(uids), weights=list(weights))
        check_extrinsic("set_weights", result)

    def weights(self, sub: Any, netuid: int, block: int) -> dict[int, dict[int, float]]:
        return {int(v): {int(u): float(w) for u, w in row}
                for v, row in sub.weights(netuid=netuid, block=block) or []}
