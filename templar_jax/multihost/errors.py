"""The one error type of a neuron that spans processes."""


class MultihostError(RuntimeError):
    """A process of a multi-process neuron failed, stalled or disagreed (names host and phase)."""
