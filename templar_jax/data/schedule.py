"""Which shard is active at a global outer step, the same answer on every peer.

As in the reference (`compute_shard_state`), a run walks its shard set one shard at a time:

    position(step) = (step // outer_steps_per_shard) % n_shards

where `step` is the global outer step (window - start window) and `position` indexes the shard
set's shards in ascending shard-file order; past the last shard it starts over (replay).
A run config with `data.outer_steps_per_shard = 0` has no schedule: every step samples from
all shards at once (the whole set is one pool), which is what runs without the key always did.
"""

from __future__ import annotations

from dataclasses import dataclass

from templar_jax.data.errors import DataError


@dataclass(frozen=True)
class ShardSchedule:
    outer_steps_per_shard: int
    n_shards: int

    def __post_init__(self):
        if self.outer_steps_per_shard < 1:
            raise DataError(f"outer_steps_per_shard must be >= 1, got {self.outer_steps_per_shard}")
        if self.n_shards < 1:
            raise DataError(f"a shard schedule needs at least one shard, got {self.n_shards}")

    def position(self, global_step: int) -> int:
        """Position (0-based, ascending shard order) of the shard active at `global_step`."""
        if global_step < 0:
            raise DataError(f"global step must be >= 0, got {global_step}")
        return (global_step // self.outer_steps_per_shard) % self.n_shards

    def next_position(self, global_step: int) -> int:
        """The shard that becomes active after the one of `global_step` (what to prefetch)."""
        return (self.position(global_step) + 1) % self.n_shards
