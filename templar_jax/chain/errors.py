"""Typed errors of the chain bridge; each names the reason, never a secret."""

from __future__ import annotations


class ChainError(Exception):
    """Base class of every error the chain bridge raises on purpose."""


class ChainNotInitializedError(ChainError):
    """The LocalChain file is missing or has no settings (run `templar-jax chain init`)."""


class ChainAlreadyInitializedError(ChainError):
    """`init` was asked to create a chain where one already exists."""


class ChainConfigError(ChainError, ValueError):
    """A run-level setting (block time, blocks per window, mode, ...) is invalid."""


class InvalidHotkeyError(ChainError, ValueError):
    """A hotkey name or stake given to `register` is not acceptable."""


class NotRegisteredError(ChainError):
    """The hotkey this client acts as has no uid on the chain."""


class RegistrationFullError(ChainError):
    """Every uid slot (max_uids) is taken."""


class CommitmentTooLongError(ChainError, ValueError):
    """A commitment is longer than the chain accepts (128 bytes of UTF-8)."""


class InvalidCommitmentError(ChainError, ValueError):
    """A commitment is not a string (or not encodable as UTF-8)."""


class InvalidWeightsError(ChainError, ValueError):
    """Weights are not finite, negative, for unknown uids, duplicated or all zero."""


class BlockNotProducedError(ChainError, ValueError):
    """`block_hash` was asked for a block the chain has not produced yet (or a negative one)."""


class ChainTimeoutError(ChainError, TimeoutError):
    """`wait_for_block` did not see the block within its timeout."""


class ChainUnavailableError(ChainError):
    """The chain could not be reached (retries exhausted) or its SDK is missing."""


class ChainTransactionError(ChainError):
    """The chain answered but refused a transaction (commit or set_weights)."""


class ManualModeError(ChainError):
    """`advance` was called on a chain whose blocks follow the wall clock."""
