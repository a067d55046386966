"""Keep state in host memory between the phases that use it (JAX memory kinds).

A 72B miner cannot keep every fp32 copy on its accelerators: the window-start params (theta0),
the error feedback and, outside the inner loop, the AdamW moments wait in `pinned_host` memory
and come back to the device only for the phase that reads them (what the reference does with
pinned CUDA tensors). A transfer is a copy, so results are bit-identical with and without it.

    check_memory_kind(mesh.devices.flat, "pinned_host")   # OffloadError where the backend lacks it
    state = to_host(state, "pinned_host")                  # same shardings, host memory
    state = to_device(state)                               # back to the device's default memory

Shardings are kept: each array moves with `array.sharding.with_memory_kind(kind)`, so every
device's shard goes to its own host's memory (no gather).
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import jax.numpy as jnp

HOST_MEMORY_KINDS = ("pinned_host", "unpinned_host")


class OffloadError(ValueError):
    """The backend's devices lack the memory kind an offload option asks for."""


def memory_kinds(device) -> tuple[str, ...]:
    """Memory kinds `device` addresses (empty where the backend does not report them)."""
    try:
        return tuple(m.kind for m in device.addressable_memories())
    except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
        return ()


def check_memory_kind(devices: Iterable, kind: str) -> None:
    """Raise OffloadError naming the device and the kinds it has when one lacks `kind`."""
    if kind not in HOST_MEMORY_KINDS:
        raise OffloadError(f"offload memory kind {kind!r} is not a host memory kind {HOST_MEMORY_KINDS}")
    for device in devices:
        have = memory_kinds(device)
        if kind not in have:
            raise OffloadError(f"{device.platform} device {device.id} has no {kind!r} memory "
                               f"(memory kinds: {list(have) or 'none reported'}); turn the offload options off")


def default_memory_kind(array: jax.Array) -> str:
    return next(iter(array.sharding.device_set)).default_memory().kind


def _move(tree: Any, kind_of) -> Any:
    def move(x):
        if not isinstance(x, jax.Array):
            return x
        kind = kind_of(x)
        return x if x.sharding.memory_kind == kind else jax.device_put(x, x.sharding.with_memory_kind(kind))
    return jax.tree.map(move, tree)


def to_host(tree: Any, kind: str = "pinned_host") -> Any:
    """Every array of `tree` in host memory `kind`, with its sharding otherwise unchanged."""
    return _move(tree, lambda _: kind)


def to_device(tree: Any) -> Any:
    """Every array of `tree` in its devices' default memory (arrays already there are returned)."""
    return _move(tree, default_memory_kind)


def fresh_device_copy(tree: Any) -> Any:
    """A device copy that may be donated: host arrays are moved (a new buffer), device arrays
    copied, so the caller's tree stays valid."""
    def copy(x):
        if isinstance(x, jax.Array) and x.sharding.memory_kind != default_memory_kind(x):
            return to_device(x)
        return jnp.copy(x)
    return jax.tree.map(copy, tree)


def tree_memory_kinds(tree: Any) -> set[str]:
    """The memory kinds the arrays of `tree` live in (tests and logs)."""
    return {x.sharding.memory_kind for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)}


class StateOffload:
    """Which of a miner's states wait in host memory between phases (run config `offload`).

    Each method returns its tree parked in host memory when that option is on, else unchanged;
    `to_device` brings a tree back for the phase that reads it."""

    def __init__(self, *, theta0: bool = False, error_feedback: bool = False, optimizer: bool = False,
                 memory_kind: str = "pinned_host", devices: Iterable = ()):
        self.flags = {"theta0": theta0, "error_feedback": error_feedback, "optimizer": optimizer}
        self.memory_kind = memory_kind
        if any(self.flags.values()):
            check_memory_kind(devices, memory_kind)

    @classmethod
    def from_section(cls, section, devices: Iterable) -> "StateOffload":
        """From a run config's `offload` section (config.sections.OffloadSection)."""
        return cls(theta0=section.window_start_params, error_feedback=section.error_feedback,
                   optimizer=section.optimizer, memory_kind=section.memory_kind, devices=devices)

    def _park(self, name: str, tree: Any) -> Any:
        return to_host(tree, self.memory_kind) if self.flags[name] else tree

    def theta0(self, tree: Any) -> Any:
        return self._park("theta0", tree)

    def error_feedback(self, tree: Any) -> Any:
        return self._park("error_feedback", tree)

    def optimizer(self, tree: Any) -> Any:
        return self._park("optimizer", tree)
