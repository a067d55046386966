"""The one error a run config raises: the message names the file or override, the key and why."""

from __future__ import annotations


class RunConfigError(ValueError):
    """A run config (file or override) is malformed; the message names the key and reason."""
