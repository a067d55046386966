"""Optional Weights & Biases logging (extra [wandb]): each event's numbers as one `wandb.log` row.

`wandb` is imported only when a project is configured; `module=` lets tests pass a stand-in.
"""

from __future__ import annotations

from typing import Any


class WandbError(RuntimeError):
    """Weights & Biases logging was asked for but cannot run."""


def flatten_numbers(record: dict, prefix: str = "") -> dict[str, float]:
    """Every int/float/bool leaf of `record` as 'a/b/c' -> float (strings and lists are left out)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_numbers(value, f"{name}/"))
        elif isinstance(value, (bool, int, float)):
            out[name] = float(value)
    return out


class WandbSink:
    """An event sink logging to a W&B run named after the neuron; rows are keyed '{event}/{field}'
    (per-peer scores as 'scores/uids/{uid}/{score}') and carry the window."""

    def __init__(self, project: str, *, role: str, uid: int, config: dict | None = None, module: Any = None):
        if module is None:
            try:
                import wandb as module
            except ImportError:
                raise WandbError(f"metrics.wandb_project={project!r} needs wandb: pip install "
                                 "'templar-jax[wandb]'") from None
        self.wandb = module
        self.run = module.init(project=project, name=f"{role}-{uid}", config=config or {})

    def __call__(self, record: dict) -> None:
        row = flatten_numbers({k: v for k, v in record.items() if k not in ("t", "uid")}, f"{record['event']}/")
        if "window" in record:
            row["window"] = float(record["window"])
        if row:
            self.run.log(row)

    def close(self) -> None:
        self.run.finish()
