"""What the miner and the validator share: the parts they receive (`NeuronParts`, built by
`neurons.assemble` or by a test) and the network reads both make (leader, peers, start window)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from templar_jax.chain import Chain, Metagraph
from templar_jax.config import RunConfig
from templar_jax.events import EventLog
from templar_jax.gauntlet import GauntletConfig, choose_sample_positions
from templar_jax.multihost import SoloAgreement, solo
from templar_jax.neurons.agreed_gather import agreed_gather
from templar_jax.neurons.clock import WindowClock
from templar_jax.neurons.datasets import DataSets
from templar_jax.neurons.exchange import gather_window, select_contributors
from templar_jax.neurons.host_reads import HostReads
from templar_jax.neurons.network import PeerDirectory
from templar_jax.neurons.spool import PayloadSpool
from templar_jax.neurons.window_state import Gathered
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.protocol.leader import PeerList, default_peer_list, read_peer_list, read_start_window
from templar_jax.storage.bucket import Bucket

log = logging.getLogger(__name__)


@dataclass
class NeuronParts:
    """Everything a neuron works with; it builds none of it itself."""

    cfg: RunConfig
    hotkey: str
    uid: int
    run_dir: Path  # event log and local state
    chain: Chain
    bucket: Bucket  # mine, writable; its read access is already committed on chain
    peers: PeerDirectory  # the other neurons' buckets, from their chain commitments
    data: DataSets
    model: GlobalModel
    clock: WindowClock
    events: EventLog
    # one process: decisions made here; several (`templar_jax.multihost`): made on process 0
    agreement: SoloAgreement = field(default_factory=solo)


def process_dir(run_dir: str | Path, agreement: SoloAgreement) -> Path:
    """Where this process writes what is its own (event log, payload spool): the run folder on
    process 0, `run_dir/process-N/` on the others (the run folder may be shared by all)."""
    run_dir = Path(run_dir)
    return run_dir if agreement.leader else run_dir / f"process-{agreement.process_index}"


def gauntlet_config(cfg: RunConfig) -> GauntletConfig:
    """The run config's `validator` section is a GauntletConfig: every Gauntlet key, one source."""
    return cfg.validator


class NeuronBase:
    role = "neuron"

    def __init__(self, parts: NeuronParts):
        self.cfg, self.hotkey, self.uid, self.run_dir = parts.cfg, parts.hotkey, parts.uid, Path(parts.run_dir)
        self.chain, self.bucket, self.peers = parts.chain, parts.bucket, parts.peers
        self.data, self.model, self.clock, self.events = parts.data, parts.model, parts.clock, parts.events
        self.agreement = parts.agreement
        self.process_dir = process_dir(self.run_dir, self.agreement)
        self.version = self.cfg.run.version
        self.gauntlet_cfg = gauntlet_config(self.cfg)
        self.sample_positions = choose_sample_positions(self.model.shapes_flat, self.gauntlet_cfg)
        log.info("%s uid %d (%s) joined: model %s, %d train samples", self.role, self.uid, self.hotkey,
                 self.cfg.model.preset, self.data.train.n_samples)

    # -- network reads --------------------------------------------------------------------
    def leader_bucket(self, graph: Metagraph | None = None) -> tuple[int, Bucket | None]:
        """(leader uid, its bucket) from `graph` (read from the chain when not given)."""
        leader = (self.chain.metagraph() if graph is None else graph).leader_uid
        if leader == self.uid:
            return leader, self.bucket
        return leader, self.peers.bucket(leader)

    def peer_view(self, graph: Metagraph | None = None) -> tuple[list[int], dict[int, Bucket]]:
        """(miner uids, every committed bucket) from one read of the chain's commitments.
        Miners are the uids without stake that committed a bucket (the gather candidates);
        `graph` is the window's metagraph (read from the chain when not given)."""
        buckets = self.peers.refresh()
        validators = set((self.chain.metagraph() if graph is None else graph).validator_uids)
        return sorted(u for u in buckets if u not in validators), buckets

    def peer_list(self, window: int, miners: list[int], graph: Metagraph | None = None) -> PeerList:
        """The leader's peer list effective at `window`; before its first one, miners by uid."""
        _, leader = self.leader_bucket(graph)
        peers = read_peer_list(leader, window, self.version) if leader is not None else None
        return peers or default_peer_list(window, miners, self.cfg.peers.gather, self.cfg.peers.reserve)

    def gather(self, window: int, uids: list[int], peers: PeerList, buckets: dict[int, Bucket], *,
               keep_raw: bool = False, spool: PayloadSpool | None = None) -> Gathered:
        """`uids`' payloads of `window` (upload window from the clock) and who counts by `peers`;
        with `spool`, accepted payloads wait on local disk (`neurons.exchange`)."""
        t0 = time.time()
        upload = self.clock.upload_window(window)
        reads = None  # run config multihost.payload_reads: who downloads the valid payloads
        if self.cfg.multihost.payload_reads == "every_host":
            reads = HostReads(buckets, self.cfg.peers.gather_timeout_s, self.cfg.peers.gather_in_flight)
        got = agreed_gather(
            self.agreement, window,
            lambda raw: gather_window(window, uids, buckets, upload=upload, version=self.version, codec=self.model.codec,
                                      deadline_s=self.cfg.peers.gather_timeout_s, keep_raw=raw, spool=spool,
                                      in_flight=self.cfg.peers.gather_in_flight),
            codec=self.model.codec, version=self.version, keep_raw=keep_raw, spool=spool, reads=reads)
        return Gathered(peers, got, select_contributors(peers, got.valid), time.time() - t0)

    def wait_start_window(self, poll_s: float = 0.5, timeout_s: float = 600.0) -> int:
        """The leader's start window. Every read and the timeout go through the agreement, so
        all processes of a neuron take the same steps (no agreed region here: one that filled
        the peer directory's cache on process 0 alone would shift later decisions)."""
        deadline = self.agreement.now() + timeout_s
        while self.agreement.now() < deadline:
            _, leader = self.leader_bucket()
            if leader is not None:
                start = read_start_window(leader, self.version)
                if start is not None:
                    return start
            time.sleep(poll_s)
        raise TimeoutError("the leader validator published no start window")

    def is_null_round(self, window: int, start: int) -> bool:
        return window < start + self.cfg.run.null_rounds
