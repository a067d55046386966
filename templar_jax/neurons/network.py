"""How a neuron reaches the network: its chain handle, its own bucket (write access stays
local) and the other neurons' buckets, found through the read access they commit on chain."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from templar_jax.chain import Chain, ValidatorRule
from templar_jax.storage.bucket import Bucket, BucketConfig
from templar_jax.storage.credentials import (
    BucketAccess,
    CommitmentError,
    S3Credentials,
    decode_commitment,
    encode_commitment,
)

log = logging.getLogger(__name__)


class NetworkSetupError(RuntimeError):
    """The neuron cannot join: chain, bucket or registration is not usable (reason in message)."""


def open_chain(backend: str, network: str, hotkey: str, *, netuid: int = 3,
               wallet: str | None = None, blocks_per_window: int = 115, block_time_s: float = 12.0,
               rule: ValidatorRule = ValidatorRule()) -> Chain:
    """The run's chain. A LocalChain keeps the block time and window length it was created with;
    on Bittensor they come from the run config (`run.block_time_s`, `run.blocks_per_window`)."""
    if backend == "local":
        from templar_jax.chain.local import LocalChain

        if not Path(network).exists():
            raise NetworkSetupError(
                f"local chain {network} does not exist (create it with `templar-jax chain init`)")
        return LocalChain(network, hotkey=hotkey, rule=rule)
    if backend == "bittensor":
        from templar_jax.chain.bittensor_chain import BittensorChain

        return BittensorChain(netuid, network=network, wallet_name=wallet, wallet_hotkey=hotkey,
                              blocks_per_window=blocks_per_window, block_time_s=block_time_s, rule=rule)
    raise NetworkSetupError(f"unknown chain backend {backend!r} (local or bittensor)")


def my_uid(chain: Chain, *, register_stake: float | None = None) -> int:
    """The neuron's uid; on a LocalChain it registers itself when asked (register_stake given)."""
    from templar_jax.chain.errors import NotRegisteredError

    try:
        return chain.my_uid()
    except NotRegisteredError:
        if register_stake is None or not hasattr(chain, "register"):
            raise NetworkSetupError(f"hotkey {chain.hotkey!r} is not registered on the chain") from None
        return chain.register(chain.hotkey, stake=register_stake)


def load_credentials(path: str | None, env_prefix: str) -> S3Credentials | None:
    """S3/R2 keys from a local JSON file {"access_key_id", "secret_access_key"[, "session_token"]},
    else from the environment ({env_prefix}ACCESS_KEY_ID, ...). Never logged."""
    if not path:
        return S3Credentials.from_env(env_prefix)
    try:
        obj = json.loads(Path(path).read_text())
        return S3Credentials(obj["access_key_id"], obj["secret_access_key"], obj.get("session_token"))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NetworkSetupError(f"credentials file {path}: unusable ({type(err).__name__})") from None


def open_my_bucket(url: str, *, endpoint: str | None = None, write_credentials_file: str | None = None,
                   read_credentials_file: str | None = None,
                   config: BucketConfig | None = None) -> tuple[Bucket, BucketAccess]:
    """My bucket for writing, and the read access to publish. Write credentials stay in this
    process; the read credentials are what goes on chain. `config`: run config storage.client."""
    s3 = url.startswith("s3://")
    write = load_credentials(write_credentials_file, "TEMPLAR_S3_") if s3 else None
    read = load_credentials(read_credentials_file, "TEMPLAR_S3_READ_") if s3 else None
    if url.startswith("file://"):
        Path(url[len("file://"):]).mkdir(parents=True, exist_ok=True)
    region = "auto" if endpoint and "r2.cloudflarestorage.com" in endpoint else None
    bucket = Bucket.open(url, write, endpoint=endpoint, region=region, config=config)
    return bucket, BucketAccess(url, endpoint=endpoint, region=region, credentials=read)


def publish_access(chain: Chain, access: BucketAccess) -> None:
    """Commit my bucket's read access on chain unless the same commitment is already there."""
    text = encode_commitment(access)
    uid = chain.my_uid()
    if chain.commitments().get(uid) != text:
        chain.commit(text)
        log.info("committed read access for uid %d (%d bytes)", uid, len(text))


def open_committed(text: str, config: BucketConfig | None = None) -> Bucket:
    """The bucket whose read access `text` (a chain commitment) publishes."""
    return decode_commitment(text).open(config=config)


class PeerDirectory:
    """uid -> opened read-only Bucket, from the chain's commitments; refreshed on demand and
    cached per commitment so a changed commitment reopens the bucket. Every bucket is opened
    with `config` (run config storage.client)."""

    def __init__(self, chain: Chain, config: BucketConfig | None = None,
                 opener: Callable[[str, BucketConfig | None], Bucket] | None = None):
        """`opener(commitment, config)` opens a peer's bucket (default: from the commitment's
        read access; a multi-process neuron opens it on process 0 alone)."""
        self.chain = chain
        self.config = config
        self.opener = opener or open_committed
        self._open: dict[int, tuple[str, Bucket]] = {}

    def refresh(self) -> dict[int, Bucket]:
        out: dict[int, Bucket] = {}
        for uid, text in self.chain.commitments().items():
            cached = self._open.get(uid)
            if cached and cached[0] == text:
                out[uid] = cached[1]
                continue
            try:
                bucket = self.opener(text, self.config)
            except (CommitmentError, ValueError) as err:
                log.warning("uid %d: unusable commitment skipped (%s)", uid, err)
                continue
            except Exception as err:  # an unreachable bucket must not stop the neuron
                log.warning("uid %d: cannot open committed bucket (%s: %s)", uid, type(err).__name__, err)
                continue
            self._open[uid] = (text, bucket)
            out[uid] = bucket
        return out

    def bucket(self, uid: int) -> Bucket | None:
        cached = self._open.get(uid)
        if cached is None:
            return self.refresh().get(uid)
        return cached[1]
