"""Set-up shared by the miner and the validator: identity, chain, buckets, model, data."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from templar_jax.config import RunConfig
from templar_jax.gauntlet import GauntletConfig, choose_sample_positions
from templar_jax.neurons.engine import GlobalModel, open_datasets
from templar_jax.events import EventLog
from templar_jax.neurons.mesh import neuron_mesh
from templar_jax.protocol.leader import PeerList, default_peer_list, read_peer_list, read_start_window
from templar_jax.neurons.network import PeerDirectory, my_uid, open_chain, open_my_bucket, publish_access
from templar_jax.storage.bucket import Bucket
from templar_jax.xla_cache import enable_compilation_cache

log = logging.getLogger(__name__)


class NeuronBase:
    role = "neuron"

    def __init__(self, settings: RunConfig, *, hotkey: str, run_dir: str | Path,
                 register_stake: float | None = None):
        enable_compilation_cache()
        self.settings = settings
        self.hotkey = hotkey
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.chain = open_chain(settings.chain.backend, settings.chain.network, hotkey,
                                netuid=settings.chain.netuid, wallet=settings.chain.wallet)
        self.uid = my_uid(self.chain, register_stake=register_stake)
        self.bucket, access = open_my_bucket(settings.storage.bucket, endpoint=settings.storage.endpoint,
                                             write_credentials_file=settings.storage.write_credentials_file,
                                             read_credentials_file=settings.storage.read_credentials_file)
        publish_access(self.chain, access)
        self.peers = PeerDirectory(self.chain)
        self.events = EventLog(self.run_dir, self.role, self.uid)
        self.data = open_datasets(settings.data.path, settings.data.seq_len)
        self.model = GlobalModel(settings, pad_id=self.data.pad_id, mesh=neuron_mesh(settings.mesh.spec))
        self.gauntlet_cfg = GauntletConfig(burn_fraction=settings.validator.burn_fraction, burn_uid=settings.validator.burn_uid,
                                           eval_uids_per_window=settings.validator.eval_uids,
                                           gather_peers=settings.peers.gather,
                                           reserve_peers=settings.peers.reserve)
        self.sample_positions = choose_sample_positions(self.model.shapes_flat, self.gauntlet_cfg)
        log.info("%s uid %d (%s) joined: model %s, %d train samples", self.role, self.uid, hotkey,
                 settings.model.preset, self.data.train.n_samples)

    # -- network helpers --------------------------------------------------------------
    def leader_bucket(self) -> tuple[int, Bucket | None]:
        leader = self.chain.metagraph().leader_uid
        if leader == self.uid:
            return leader, self.bucket
        return leader, self.peers.bucket(leader)

    def peer_view(self) -> tuple[list[int], dict[int, Bucket]]:
        """(miner uids, every committed bucket) from one read of the chain's commitments.
        Miners are the uids without stake that committed a bucket (the gather candidates)."""
        buckets = self.peers.refresh()
        validators = set(self.chain.metagraph().validator_uids)
        return sorted(u for u in buckets if u not in validators), buckets

    def peer_list(self, window: int, miners: list[int]) -> PeerList:
        """The leader's peer list effective at `window`; before its first one, miners by uid."""
        s = self.settings
        _, leader = self.leader_bucket()
        peers = read_peer_list(leader, window, s.run.version) if leader is not None else None
        return peers or default_peer_list(window, miners, s.peers.gather, s.peers.reserve)

    def wait_start_window(self, poll_s: float = 0.5, timeout_s: float = 600.0) -> int:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            _, leader = self.leader_bucket()
            if leader is not None:
                start = read_start_window(leader, self.settings.run.version)
                if start is not None:
                    return start
            time.sleep(poll_s)
        raise TimeoutError("the leader validator published no start window")

    def is_null_round(self, window: int, start: int) -> bool:
        return window < start + self.settings.run.null_rounds
