"""templar_jax.checkpoint: orbax checkpoints, miner resume, bucket publish/fetch, catch-up.

- `local.LocalCheckpoints`: a directory of step checkpoints (async, keep-last-N, reshard on restore).
- `resume`: params + inner optimizer state + error feedback + window + schedule step.
- `catch_up.catch_up`: replay missed outer updates (pure).
"""

from templar_jax.checkpoint.catch_up import CatchUpResult, catch_up
from templar_jax.checkpoint.local import (
    CheckpointError,
    CheckpointMeta,
    LocalCheckpoints,
    Restored,
    abstract_target,
)
from templar_jax.checkpoint.resume import (
    TrainingState,
    restore_training_state,
    save_training_state,
)

__all__ = [
    "CatchUpResult", "catch_up", "CheckpointError", "CheckpointMeta", "LocalCheckpoints",
    "Restored", "abstract_target", "TrainingState", "restore_training_state", "save_training_state",
]
