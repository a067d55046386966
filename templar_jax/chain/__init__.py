"""templar_jax.chain: the chain bridge (SPEC sec. 4).

`Chain` is the protocol neurons code against; `LocalChain` is the embedded SQLite chain
(default for demos and tests); `BittensorChain` adapts a Bittensor Subtensor (extra [chain]).
"""

from templar_jax.chain.bittensor_chain import BittensorChain
from templar_jax.chain.consensus import yuma_incentive
from templar_jax.chain.errors import (
    BlockNotProducedError,
    ChainAlreadyInitializedError,
    ChainConfigError,
    ChainError,
    ChainNotInitializedError,
    ChainTimeoutError,
    ChainTransactionError,
    ChainUnavailableError,
    CommitmentTooLongError,
    InvalidCommitmentError,
    InvalidHotkeyError,
    InvalidWeightsError,
    ManualModeError,
    NotRegisteredError,
    RegistrationFullError,
)
from templar_jax.chain.local import LocalChain
from templar_jax.chain.protocol import Chain, Metagraph, parse_commitments, window_of
from templar_jax.chain.roles import ValidatorRule
from templar_jax.chain.validation import (
    MAX_COMMITMENT_BYTES,
    normalize_weights,
    validate_commitment,
)

__all__ = [
    "BittensorChain",
    "BlockNotProducedError",
    "Chain",
    "ChainAlreadyInitializedError",
    "ChainConfigError",
    "ChainError",
    "ChainNotInitializedError",
    "ChainTimeoutError",
    "ChainTransactionError",
    "ChainUnavailableError",
    "CommitmentTooLongError",
    "InvalidCommitmentError",
    "InvalidHotkeyError",
    "InvalidWeightsError",
    "LocalChain",
    "MAX_COMMITMENT_BYTES",
    "ManualModeError",
    "Metagraph",
    "NotRegisteredError",
    "RegistrationFullError",
    "ValidatorRule",
    "normalize_weights",
    "parse_commitments",
    "validate_commitment",
    "window_of",
    "yuma_incentive",
]
