"""Who is a validator: a stake threshold and the chain's validator permit.

On a Bittensor subnet miners hold stake too (they earn alpha), so "stake > 0" does not tell
the roles apart. The chain grants validator permits to the top stake holders (at most
`max_validators` of them per subnet); a run may also ask for a minimum stake. A uid is a
validator when it has stake > 0, at least `min_stake`, and (if `require_permit`) a permit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from templar_jax.chain.errors import ChainConfigError

# Bittensor's default MaxAllowedValidators per subnet: how many top-stake uids hold a permit.
DEFAULT_MAX_VALIDATORS = 64


@dataclasses.dataclass(frozen=True)
class ValidatorRule:
    """The run's rule separating validators from miners (run config `chain.validator_*`)."""

    min_stake: float = 0.0
    require_permit: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_stake) and self.min_stake >= 0):
            raise ChainConfigError(
                f"chain.validator_min_stake must be finite and >= 0, got {self.min_stake}"
            )

    def is_validator(self, stake: float, permit: bool) -> bool:
        return stake > 0 and stake >= self.min_stake and (permit or not self.require_permit)

    def validators(
        self, uids: Sequence[int], stake: Sequence[float], permit: Sequence[bool]
    ) -> tuple[int, ...]:
        """Validator uids, highest stake first (ties by uid)."""
        chosen = [(s, u) for u, s, p in zip(uids, stake, permit) if self.is_validator(s, p)]
        return tuple(u for s, u in sorted(chosen, key=lambda su: (-su[0], su[1])))


def permits_by_stake(
    uids: Sequence[int], stake: Sequence[float], max_validators: int = DEFAULT_MAX_VALIDATORS
) -> tuple[bool, ...]:
    """Permits the way the chain hands them out: the `max_validators` highest stakes (> 0;
    ties by uid). LocalChain uses it so its staked neurons hold permits as on Bittensor."""
    ranked = sorted((-s, u) for u, s in zip(uids, stake) if s > 0)
    holders = {u for _, u in ranked[:max_validators]}
    return tuple(u in holders for u in uids)
