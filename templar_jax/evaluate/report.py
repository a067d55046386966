"""Evaluation results as one JSON document and a rich table."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

DEFINITIONS = {
    "loss": "mean next-token NLL in nats over unmasked targets (pad/EOS targets masked, as in training)",
    "perplexity": "exp(loss)",
    "bits_per_byte": "total target NLL / ln 2 / total UTF-8 bytes of the unmasked target tokens "
                     "(bytes per token from the tokenizer: templar_jax.evaluate.byte_counts)",
}


def build_results(loaded, heldout, lm_eval: Optional[dict] = None) -> dict[str, Any]:
    """The JSON document `templar-jax eval --json` writes."""
    from templar_jax.model import param_count

    cfg = loaded.model_cfg
    doc: dict[str, Any] = {
        "checkpoint": str(loaded.checkpoint_dir),
        "step": loaded.step,
        "window": loaded.meta.window,
        "version": loaded.meta.version,
        "model": {"d_model": cfg.d_model, "n_layers": cfg.n_layers, "vocab_size": cfg.vocab_size,
                  "params": int(param_count(cfg))},
        "heldout": heldout.to_json() if heldout is not None else None,
        "definitions": DEFINITIONS,
    }
    if lm_eval is not None:
        doc["lm_eval"] = lm_eval
    return doc


def write_json(results: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, allow_nan=False, default=_finite) + "\n")
    return path


def _finite(x):  # numpy scalars
    return float(x) if math.isfinite(float(x)) else None


def _short(path: str) -> str:
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if home != "/" and path.startswith(home) else path


def results_table(results: dict):
    from rich.table import Table

    table = Table(title=f"templar-jax eval: {results['checkpoint']} (step {results['step']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    h = results.get("heldout")
    if h:
        table.add_row("data", f"{_short(h['data'])} ({h['split']})")
        table.add_row("samples x seq_len", f"{h['n_samples']} x {h['seq_len']}")
        table.add_row("target tokens (unmasked)", f"{h['n_targets']:,}")
        table.add_row("loss (nats/token)", f"{h['loss']:.4f}")
        table.add_row("perplexity", f"{h['perplexity']:.2f}")
        table.add_row("bits per byte", "-" if h["bits_per_byte"] is None else f"{h['bits_per_byte']:.4f}")
        if h.get("n_bytes"):
            table.add_row("bytes per token", f"{h['n_bytes'] / h['n_targets']:.3f}")
    for task, metrics in sorted((results.get("lm_eval") or {}).items()):
        for name, value in sorted(metrics.items()):
            table.add_row(f"{task} {name}", f"{value:.4f}")
    return table
