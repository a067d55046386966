"""The names of the miners' --behavior values, without importing them (the CLI's help and
argument checks read these; `behaviors.py` holds the uploads and must match, a test checks)."""

from __future__ import annotations

SIMPLE = ("honest", "noise", "corrupt", "overflow", "evaltrain", "freeride", "replay", "late")
TARGETED = ("copy", "copy-perturb")  # written NAME:UID
# issue 22's adversary gallery, one miner each (`templar-jax demo --gallery`); the copier copies uid 1
GALLERY = ("evaltrain", "copy-perturb:1", "freeride", "replay", "late", "overflow")


def behavior_names() -> list[str]:
    """Every --behavior form, for help and error texts."""
    return [*SIMPLE, *(f"{name}:UID" for name in TARGETED)]
