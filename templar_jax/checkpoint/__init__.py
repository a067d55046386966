"""templar_jax.checkpoint: orbax checkpoints, miner resume, bucket publish/fetch, catch-up.

- `local.LocalCheckpoints`: a directory of step checkpoints (async, keep-last-N, reshard on restore).
- `resume`: params + inner optimizer state + error feedback + window + schedule step.
- `remote`: publish/fetch through a storage Bucket (manifest + sha256, `_LATEST.json` last).
- `bootstrap`: `save_and_publish` / `save_checkpoint` (validator), `bootstrap_from_bucket` (late joiner).
- `publisher.CheckpointPublisher`: uploads finished local checkpoints on a background thread.
- `catch_up.catch_up`: replay missed outer updates (pure).
"""

from templar_jax.checkpoint.bootstrap import bootstrap_from_bucket, save_and_publish, save_checkpoint
from templar_jax.checkpoint.catch_up import CatchUpResult, catch_up
from templar_jax.checkpoint.local import (
    CheckpointError,
    CheckpointMeta,
    LocalCheckpoints,
    Restored,
    abstract_target,
    layer_chunked_save_args,
)
from templar_jax.checkpoint.remote import (
    RemoteCheckpointError,
    fetch_checkpoint,
    prune_remote,
    publish_checkpoint,
    read_latest,
    remote_windows,
)
from templar_jax.checkpoint.resume import (
    TrainingState,
    restore_training_state,
    save_training_state,
)

__all__ = [
    "bootstrap_from_bucket", "save_and_publish", "save_checkpoint", "layer_chunked_save_args", "RemoteCheckpointError",
    "fetch_checkpoint", "prune_remote", "publish_checkpoint", "read_latest", "remote_windows",
    "CatchUpResult", "catch_up", "CheckpointError", "CheckpointMeta", "LocalCheckpoints",
    "Restored", "abstract_target", "TrainingState", "restore_training_state", "save_training_state",
]
