"""Zero-shot benchmark tasks through EleutherAI's lm-evaluation-harness, on the HF export.

The model is exported with `templar_jax.convert.to_hf.export_hf` (float32, so nothing is lost
to bf16 rounding), its tokenizer.json is placed beside it as a `PreTrainedTokenizerFast`, and
lm-eval's own "hf" backend runs the tasks, so the numbers are comparable with published
lm-eval results (SPEC sec. 8 lists Covenant-72B's).

Optional on purpose: `lm_eval` is not a dependency of this project (not even of [dev]), and
it downloads each task's data set from the Hugging Face Hub on first use, so it needs network
access. `require_lm_eval()` fails with `LmEvalUnavailable` naming what is missing before any
work starts.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Optional, Sequence

from templar_jax.evaluate.errors import EvalError, LmEvalUnavailable

log = logging.getLogger(__name__)

# The zero-shot suite of SPEC sec. 8 (lm-eval task names).
STANDARD_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "openbookqa", "mmlu")
_NEEDED = (("lm_eval", "lm-eval"), ("transformers", "transformers"), ("torch", "torch"))


def parse_tasks(text: str) -> list[str]:
    """"arc_easy,piqa" -> ["arc_easy", "piqa"]; "standard" -> the SPEC sec. 8 suite."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise EvalError("--tasks is empty")
    out: list[str] = []
    for name in names:
        for task in (STANDARD_TASKS if name == "standard" else (name,)):
            if task not in out:
                out.append(task)
    return out


def missing_packages() -> list[str]:
    """pip names of the packages lm-eval tasks need that are not importable here."""
    return [pip for module, pip in _NEEDED if importlib.util.find_spec(module) is None]


def require_lm_eval() -> None:
    missing = missing_packages()
    if missing:
        raise LmEvalUnavailable(
            f"lm-eval tasks need {', '.join(missing)} (pip install {' '.join(missing)}); "
            "lm-eval also downloads each task's data set from the Hugging Face Hub, so it needs "
            "network access. Held-out loss, perplexity and bits per byte need neither.")


def write_hf_model(params, model_cfg, out_dir: str | Path, *, tokenizer_path: Optional[Path],
                   eos_id: Optional[int]) -> Path:
    """HF LlamaForCausalLM dir (float32) + the run's tokenizer as a PreTrainedTokenizerFast."""
    from templar_jax.convert.sources import TreeSource
    from templar_jax.convert.to_hf import export_hf

    out_dir = Path(out_dir)
    export_hf(TreeSource(params), model_cfg, out_dir, dtype="float32", eos_token_id=eos_id)
    if tokenizer_path is None:
        raise EvalError("lm-eval tasks need the model's tokenizer.json (none found beside the data)")
    shutil.copyfile(tokenizer_path, out_dir / "tokenizer.json")
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_cfg.max_seq_len}
    if eos_id is not None:
        from templar_jax.data.tokenizer import load_tokenizer

        eos = load_tokenizer(tokenizer_path).id_to_token(eos_id)
        tok_cfg.update(eos_token=eos, pad_token=eos)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1) + "\n")
    return out_dir


def run_lm_eval(hf_dir: str | Path, tasks: Sequence[str], *, batch_size: int = 8, limit: Optional[int] = None,
                device: str = "cpu") -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from `lm_eval.simple_evaluate` (zero-shot)."""
    require_lm_eval()
    import lm_eval

    results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={hf_dir},dtype=float32",
                                      tasks=list(tasks), num_fewshot=0, batch_size=batch_size,
                                      device=device, limit=limit)
    out: dict[str, dict[str, float]] = {}
    for task, metrics in (results or {}).get("results", {}).items():
        out[task] = {k: float(v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return out
