"""The data sets a run trains and evaluates on, from the run config's `data` section."""

from __future__ import annotations

from dataclasses import dataclass, field

from templar_jax.config.sections import DataSection
from templar_jax.data import ShardDataset
from templar_jax.data.schedule import ShardSchedule
from templar_jax.data.sources import open_shard_sets
from templar_jax.neurons.network import load_credentials


@dataclass
class DataSets:
    train: ShardDataset
    heldout: ShardDataset | None
    pad_id: int | None  # = EOS (SPEC sec. 6); None when the shards come without one
    schedule: ShardSchedule | None = None  # None: every window samples from all train shards
    _active: int | None = field(default=None, repr=False)

    def train_at(self, global_step: int) -> ShardDataset:
        """The train samples active at `global_step` (= window - start window): one shard under
        the shard schedule, else all. Under the schedule the next shard's download starts in the
        background, and a shard the schedule moved away from is released (its cached copy of a
        bucket's shard deleted) unless it comes next again."""
        if self.schedule is None:
            return self.train
        position = self.schedule.position(global_step)
        upcoming = self.schedule.next_position(global_step)
        if self._active is not None and self._active not in (position, upcoming):
            self.train.release_shard(self._active)
        self._active = position
        if upcoming != position:
            self.train.prefetch_shard(upcoming)
        return self.train.shard_view(position)


def open_datasets(section: DataSection) -> DataSets:
    """`data.path` = 'bundled', a folder, file://, gs:// or s3:// (`templar_jax.data.sources`)."""
    creds = load_credentials(section.credentials_file, "TEMPLAR_S3_DATA_") if section.path.startswith("s3://") else None
    sets = open_shard_sets(section.path, section.seq_len, cache_dir=section.cache_dir,
                           endpoint=section.endpoint, credentials=creds)
    schedule = (ShardSchedule(section.outer_steps_per_shard, sets.train.n_shards)
                if section.outer_steps_per_shard != 0 else None)
    return DataSets(sets.train, sets.heldout, sets.pad_id, schedule)
