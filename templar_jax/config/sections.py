"""The sections of a run config, one frozen dataclass each: schema, settings and docs at once.

A field without a default is a required key. Values derived from keys (the init seed, the
aggregation rule's library name, the wire's index code name) are properties, not extra keys.
Where a wing owns the type, the section is that type: `inner` extends
`templar_jax.train.optimizer.TrainConfig`, `validator` extends
`templar_jax.gauntlet.config.GauntletConfig`, `sparseloco.kernel` is
`templar_jax.sparseloco.kernels.config.KernelConfig`, `storage.client` is
`templar_jax.storage.bucket.BucketConfig` (with `storage.client.transfer` its `TransferConfig`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from templar_jax.config.typed import doc
from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.malloc_threshold import GLIBC_MAX_THRESHOLD
from templar_jax.sparseloco.kernels.config import KernelConfig
from templar_jax.storage.bucket import BucketConfig
from templar_jax.train.optimizer import TrainConfig

# run-config name of an aggregation rule -> rule name in templar_jax.sparseloco.aggregate
AGGREGATION_RULES = {"median_clip_mean": "median_clip", "sum": "mean"}
# run-config name of an index coding -> name in templar_jax.wire
INDEX_CODINGS = {"elias-fano": "elias-fano", "12bit": "twelve-bit", "twelve-bit": "twelve-bit"}


@dataclass(frozen=True)
class RunSection:
    """The run's identity and clock."""

    version: str = doc("run version string; partitions every object key (SPEC sec. 3) and seeds "
                       "the initial params")
    blocks_per_window: int = doc("chain blocks per window (window = block // this)")
    block_time_s: float = doc("expected seconds per block (LocalChain tick, BittensorChain's wait, ETA logs)")
    null_rounds: int = doc("windows after start_window that send zeros and reset EF")
    resume_interval_windows: int = doc("windows between a miner's local resume checkpoints (0: none)", 0)

    @property
    def init_seed(self) -> int:
        """Every peer of a run starts from the same params: the seed derives from the version."""
        return int.from_bytes(hashlib.blake2b(self.version.encode(), digest_size=4).digest(), "little")


@dataclass(frozen=True)
class ModelSection:
    """Which model: a preset plus field overrides (`templar_jax.model.load_model_config`)."""

    preset: str = doc("name of templar_jax/configs/models/{preset}.yaml (or a path)")
    overrides: Mapping[str, Any] = doc("ModelConfig fields replacing the preset's", default_factory=dict)


@dataclass(frozen=True)
class MeshSection:
    """How the devices of one peer are arranged."""

    spec: str | Mapping[str, Any] = doc("'auto' (derive from plan) or e.g. 'fsdp=8' / {fsdp: 8, tensor: 1}")


@dataclass(frozen=True)
class OffloadSection:
    """State a miner keeps in host memory between the phases that use it (72B on 8 devices;
    `templar-jax plan --offload ...` shows the bytes). Results are bit-identical either way."""

    window_start_params: bool = doc("keep the window-start params (theta0) in host memory outside the delta/outer step", False)
    error_feedback: bool = doc("keep the SparseLoCo error feedback in host memory outside compression", False)
    optimizer: bool = doc("keep the AdamW state in host memory outside the inner loop", False)
    memory_kind: Literal["pinned_host", "unpinned_host"] = doc(
        "JAX memory kind of the offloaded state (pinned_host: fast DMA on GPU/TPU)", "pinned_host")

    @property
    def names(self) -> tuple[str, ...]:
        """The offloaded states by the memory planner's names (model.plan.OFFLOADABLE)."""
        return tuple(k for k in ("window_start_params", "error_feedback", "optimizer") if getattr(self, k))


@dataclass(frozen=True)
class MultihostSection:
    """One neuron across several processes (`jax.distributed`; `templar_jax.multihost`): the
    heartbeat that ends every process when one dies or stalls, and who downloads the gathered
    payloads. Unused by a one-process neuron."""

    heartbeat_s: float = doc("seconds between a process's heartbeats", 2.0)
    stall_timeout_s: float = doc("a process silent this long ends every process of the neuron (error names "
                                 "host and phase); longer than any single compile", 300.0)
    payload_reads: Literal["leader", "every_host"] = doc(
        "who downloads the gathered payloads: 'leader' (process 0, which hands their bytes to the others "
        "through jax.distributed's key-value store) or 'every_host' (process 0 decides which are valid and "
        "hands on only their sha256; each process reads them from the peers' buckets itself, taking process "
        "0's bytes for any payload it cannot read or that differs)", "leader")


@dataclass(frozen=True)
class DataSection:
    """The training data."""

    path: str = doc("'bundled', a folder, file://PATH, gs://BUCKET/PREFIX or s3://BUCKET/PREFIX holding "
                    "train_*.npy + sample_ids_*.npy shards and manifest.json (or train/ + heldout/ sets)")
    seq_len: int = doc("tokens per sequence")
    outer_steps_per_shard: int = doc("shard schedule: the shard active at global outer step s is "
                                     "(s // this) % n_shards, the same on every peer; 0: all shards at once", 0)
    cache_dir: str | None = doc("gs:// / s3:// only: local folder caching the downloaded shards "
                                "(default: the templar-jax cache root's data/ folder)", None)
    endpoint: str | None = doc("s3:// only: endpoint URL (R2: https://ACCOUNT_ID.r2.cloudflarestorage.com)", None)
    credentials_file: str | None = doc("s3:// only: local JSON file with read keys (else TEMPLAR_S3_DATA_* "
                                       "variables; none: anonymous)", None)


@dataclass(frozen=True, kw_only=True)
class InnerSection(TrainConfig):
    """The inner loop: batch geometry plus the AdamW keys of TrainConfig (SPEC defaults)."""

    steps: int = doc("inner AdamW steps per window (H)")
    micro_batch: int = doc("sequences per device-step (gradient accumulation unit)")
    batch: int = doc("sequences per inner step actually trained")
    target_batch: int = doc("sequences per inner step in the assigned pool (SPEC sec. 6)")

    @property
    def accum_steps(self) -> int:
        """Micro-batches accumulated per inner step."""
        return max(1, self.batch // max(1, self.micro_batch))


@dataclass(frozen=True)
class SparseLocoSection:
    """Compression, error feedback, aggregation and the outer step."""

    topk: int = doc("values kept per chunk")
    chunk: int = doc("chunk side (tiles are chunk x chunk for 2-D tensors)")
    error_decay: float = doc("error-feedback decay beta")
    outer_lr: float = doc("outer SGD step alpha")
    aggregation: Literal["median_clip_mean", "sum"] = doc(
        "'median_clip_mean' (SPEC 2.4) or 'sum' (paper 1/R sum)")
    index_coding: Literal["elias-fano", "12bit", "twelve-bit"] = doc(
        "wire index code: 'elias-fano' or '12bit' (= 'twelve-bit')")
    impl: Literal["auto", "jax", "pallas"] = doc(
        "'auto' (the Pallas compression kernel on GPUs, pure JAX elsewhere), 'jax' or 'pallas'", "auto")
    kernel: KernelConfig = doc("Pallas kernel variant (all 'auto' by default)", default_factory=KernelConfig)
    overlap: bool = doc(
        "miners train window W+1 while W's upload and gather run in the background, and apply W's outer "
        "step when its aggregate arrives, keeping the progress made meanwhile (docs/overlap.md); the "
        "global model, the validator and catch-up are the same either way", False)

    @property
    def aggregation_rule(self) -> str:
        """Rule name of `templar_jax.sparseloco.aggregate` ('median_clip' or 'mean')."""
        return AGGREGATION_RULES[self.aggregation]

    @property
    def wire_index_coding(self) -> str:
        """Index coding name of `templar_jax.wire` ('elias-fano' or 'twelve-bit')."""
        return INDEX_CODINGS[self.index_coding]


@dataclass(frozen=True)
class PeersSection:
    """Which peers are gathered and how long uploads and downloads may take."""

    gather: int = doc("peers aggregated per window")
    reserve: int = doc("reserve peers replacing missing gather peers, in order")
    refresh_windows: int = doc("windows between peer-list publications")
    upload_window_s: float = doc("accepted upload span after the first block of W+1")
    gather_timeout_s: float = doc("per-peer download timeout")
    gather_in_flight: int = doc("peers downloaded and checked at once (a validator holds at most this many "
                                "undecoded payloads in memory)", 32)
    decode_workers: int = doc("threads decoding one payload's indices and codes (same result for any count)", 1)

    def __post_init__(self):
        for key in ("gather_in_flight", "decode_workers"):
            if getattr(self, key) < 1:
                raise ValueError(f"peers.{key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True, kw_only=True)
class ValidatorSection(GauntletConfig):
    """Scoring (Gauntlet), weights and checkpoints: the loop's own keys plus every key of
    GauntletConfig (SPEC sec. 5 defaults); the validator scores with this section as is."""

    eval_sequences: int = doc("sequences per loss evaluation (own and random data)")
    weights_interval_windows: int = doc("windows between set_weights calls")
    checkpoint_interval_windows: int = doc("windows between published checkpoints")
    eval_budget_s: float = doc("seconds a window's evaluations may take: drawn uids that no longer fit are "
                               "skipped (named with the reason in the scores event); 0: no budget", 0.0)
    copy_sketch_chunks: int = doc("copy detection on this many sampled chunk rows per tensor (drawn with the "
                                  "window's evaluation seed; a sketch per miner, linear in the miners); "
                                  "0: every index of every pair (exact, quadratic in full index sets)", 0)
    mmap_threshold_bytes: int = doc("glibc mmap threshold the validator fixes at start (freed payload-sized "
                                    "buffers go back to the system, so its memory does not grow with the "
                                    "miners); 0: glibc's dynamic default", 1 << 20)

    def __post_init__(self):
        super().__post_init__()
        if self.eval_budget_s < 0:
            raise ValueError(f"validator.eval_budget_s must be >= 0, got {self.eval_budget_s}")
        if self.copy_sketch_chunks < 0:
            raise ValueError(f"validator.copy_sketch_chunks must be >= 0, got {self.copy_sketch_chunks}")
        if not 0 <= self.mmap_threshold_bytes <= GLIBC_MAX_THRESHOLD:
            raise ValueError(f"validator.mmap_threshold_bytes must be in [0, {GLIBC_MAX_THRESHOLD}], "
                             f"got {self.mmap_threshold_bytes}")


@dataclass(frozen=True)
class StorageSection:
    """This peer's bucket. Secrets never live here: the credentials keys name local files."""

    bucket: str = doc("my bucket URL: gs://BUCKET, s3://BUCKET (also R2), file://PATH")
    endpoint: str | None = doc("s3:// only: endpoint URL (R2: https://ACCOUNT_ID.r2.cloudflarestorage.com)", None)
    write_credentials_file: str | None = doc("local JSON file with write credentials (never published)", None)
    read_credentials_file: str | None = doc("local JSON file with the read credentials committed on chain", None)
    client: BucketConfig = doc("requests to every bucket this neuron opens: concurrency, timeouts, retries "
                               "and large objects in parts", default_factory=BucketConfig)


@dataclass(frozen=True)
class MetricsSection:
    """What a neuron exports besides its event log (off unless set): a Prometheus/OpenMetrics
    endpoint and Weights & Biases logging (extra [wandb])."""

    port: int | None = doc("serve metrics at http://HOST:PORT/metrics (0: any free port, written to "
                           "RUN_DIR/metrics/; unset: no endpoint)", None)
    host: str = doc("address the metrics endpoint binds to", "127.0.0.1")
    peak_tflops: float = doc("peak TFLOP/s per device, for the MFU gauge (0: no MFU)", 0.0)
    wandb_project: str | None = doc("log each event to this Weights & Biases project (unset: off)", None)


@dataclass(frozen=True)
class ChainSection:
    """The chain this run reports to."""

    backend: Literal["local", "bittensor"] = doc("'local' (embedded SQLite) or 'bittensor'")
    network: str = doc("local: SQLite path; bittensor: 'finney', 'test' or ws:// URL")
    netuid: int = doc("subnet id (3 for Templar)")
    wallet: str | None = doc("bittensor wallet (coldkey) name", None)
    hotkey: str | None = doc("bittensor hotkey name", None)
    validator_min_stake: float = doc("a uid is a validator only with at least this stake (and > 0); "
                                     "on mainnet miners hold stake too", 0.0)
    validator_permit_required: bool = doc("a validator must also hold the chain's validator permit "
                                          "(LocalChain grants one to each of its 64 highest stakes)", True)
