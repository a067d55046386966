"""The `SdkAdapter` of bittensor 11.x: the rewritten SDK's blocking facade `bittensor.Subtensor`.

Names used (see ../shared/notes/bittensor-sdk.md): `sub.block`, `sub.timestamp(block=)`,
`sub.block_info(block)` (.hash), `sub.subnets.metagraph(netuid, block=, commitments=False)`
(neurons with .uid .hotkey .total_stake (Balance, read with .amount) .incentive
.validator_permit), `sub.neurons.uid(hotkey, netuid)`, `sub.subnets.commitments(netuid,
block=)` ({hotkey: NeuronCommitment}, read `.value`), `sub.weights.weights(netuid, block=)`,
`sub.execute(bittensor.SetWeights(...), wallet)`, and for the commitment, which 11.x has no
typed call for, `sub.submit_call(bittensor.calls.Commitments.set_commitment(...), wallet,
signer="hotkey")` (the connection's Policy must allow raw calls). `sub.wait_for_block(b,
timeout=)` follows new heads (a subscription), so nothing polls.
"""

from __future__ import annotations

from typing import Any, Sequence

from templar_jax.chain.bittensor_adapter import (
    check_extrinsic,
    is_transient,
    to_unix_seconds,
)
from templar_jax.chain.errors import ChainTransactionError, ChainUnavailableError
from templar_jax.chain.protocol import Metagraph


class Sdk11Adapter:
    generation = 11
    subscribes = True

    def __init__(self) -> None:
        import bittensor  # noqa: PLC0415 - optional dependency, extra [chain]

        self._bt = bittensor

    def connect(self, network: str) -> Any:
        # the commitment goes through a raw call, which the default policy refuses
        return self._bt.Subtensor(network, policy=self._bt.Policy(allow_raw_calls=True))

    def make_wallet(self, name: str, hotkey: str, path: str | None) -> Any:
        kwargs = {"name": name, "hotkey": hotkey}
        if path is not None:
            kwargs["path"] = path
        return self._bt.Wallet(**kwargs)

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, self._bt.RpcPolicyError):  # the endpoint refused us: retrying won't help
            return False
        if isinstance(exc, self._bt.RpcConnectionError):
            return True
        if isinstance(exc, self._bt.ChainError):  # a dropped subscription is a ChainError
            return "connection lost" in str(exc).lower()
        return is_transient(exc)

    def head(self, sub: Any) -> int:
        return int(sub.block)

    def timestamp(self, sub: Any, block: int) -> float:
        return to_unix_seconds(sub.timestamp(block=block))

    def block_hash(self, sub: Any, block: int) -> str:
        info = sub.block_info(block)
        if info is None or not info.hash:
            raise ChainUnavailableError(f"the node has no header for block {block}")
        return str(info.hash)

    def neurons(self, sub: Any, netuid: int, block: int) -> Metagraph:
        mg = sub.subnets.metagraph(netuid, block=block, commitments=False)
        if mg is None:
            raise ChainUnavailableError(f"netuid {netuid} does not exist at block {block}")
        neurons = sorted(mg.neurons, key=lambda n: n.uid)
        return Metagraph(
            block=block,
            uids=tuple(int(n.uid) for n in neurons),
            hotkeys=tuple(str(n.hotkey) for n in neurons),
            stake=tuple(float(n.total_stake.amount) for n in neurons),
            incentive=tuple(float(n.incentive) for n in neurons),
            validator_permit=tuple(bool(n.validator_permit) for n in neurons),
        )

    def uid(self, sub: Any, hotkey: str, netuid: int) -> int | None:
        uid = sub.neurons.uid(hotkey, netuid)
        return None if uid is None else int(uid)

    def commit(self, sub: Any, wallet: Any, netuid: int, data: str) -> None:
        payload = data.encode("utf-8")  # validated by the caller: <= 128 bytes, encodable
        info = {"fields": [[{f"Raw{len(payload)}": payload}]]}
        call = self._bt.calls.Commitments.set_commitment(netuid=netuid, info=info)
        result = self._refusals_typed("set_commitment",
                                      lambda: sub.submit_call(call, wallet, signer="hotkey"))
        check_extrinsic("set_commitment", result)

    def commitments(self, sub: Any, netuid: int, block: int) -> dict[str, str]:
        entries = sub.subnets.commitments(netuid, block=block) or {}
        # .value is None while a timelocked payload is sealed; such entries carry no access yet
        return {str(hk): c.value for hk, c in entries.items() if isinstance(c.value, str)}

    def set_weights(self, sub: Any, wallet: Any, netuid: int, uids: Sequence[int],
                    weights: Sequence[float]) -> None:
        intent = self._bt.SetWeights(netuid=netuid, uids=list(uids), weights=list(weights))
        result = self._refusals_typed("set_weights", lambda: sub.execute(intent, wallet))
        check_extrinsic("set_weights", result)

    def weights(self, sub: Any, netuid: int, block: int) -> dict[int, dict[int, float]]:
        rows = sub.weights.weights(netuid, block=block) or {}
        return {int(v): {int(u): float(w) for u, w in row.items()} for v, row in rows.items()}

    def wait_for_block(self, sub: Any, block: int, timeout: float | None) -> int:
        return int(sub.wait_for_block(block, timeout=timeout).number)

    def _refusals_typed(self, name: str, submit: Any) -> Any:
        """11.x raises ChainError (with `.code`, e.g. NOT_REGISTERED, RATE_LIMITED) when it
        refuses a write before signing; a dropped connection stays transient (retried)."""
        try:
            return submit()
        except self._bt.ChainError as exc:
            if self.is_transient(exc):
                raise
            code = getattr(exc, "code", None) or type(exc).__name__
            raise ChainTransactionError(f"{name} refused: {code}") from exc
