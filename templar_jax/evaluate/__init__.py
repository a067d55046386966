"""templar_jax.evaluate: held-out loss, perplexity, bits per byte; demo-run final models; lm-eval.

- `open_eval_data(data, split=, seq_len=)` + `evaluate_shards(params, cfg, data, ...)` -> HeldoutResult
- `load_for_eval(ckpt)` / `load_checkpoint(dir)`: params + model config of a checkpoint or a run
- `from_run(run_dir, config=, overrides=)`: rebuild a demo run's final params, save a checkpoint
- `lm_eval_tasks`: the optional lm-eval path (guarded: `LmEvalUnavailable` when not installed)
"""

from templar_jax.evaluate.errors import EvalError, LmEvalUnavailable, RunReplayError
from templar_jax.evaluate.from_run import FINAL_CHECKPOINT_DIR, RunModel, from_run, is_run_dir
from templar_jax.evaluate.heldout import EvalData, HeldoutResult, evaluate_shards, make_loss_sums, open_eval_data
from templar_jax.evaluate.load import LoadedModel, load_checkpoint, load_for_eval
from templar_jax.evaluate.report import DEFINITIONS, build_results, results_table, write_json

__all__ = [
    "DEFINITIONS", "EvalData", "EvalError", "FINAL_CHECKPOINT_DIR", "HeldoutResult", "LmEvalUnavailable",
    "LoadedModel", "RunModel", "RunReplayError", "build_results", "evaluate_shards", "from_run", "is_run_dir",
    "load_checkpoint", "load_for_eval", "make_loss_sums", "open_eval_data", "results_table", "write_json",
]
