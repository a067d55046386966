"""The evaluator's metrics (Prometheus / OpenMetrics), fed with its history records.

`eval --watch --metrics-port P` serves them with `templar_jax.metrics.MetricsServer`; names
follow the neurons' `templar_*` metrics (templar_jax.metrics.neuron).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class EvalMetrics:
    """Callable on each history record (`CheckpointWatcher(on_record=...)`)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.checkpoints = Counter("templar_eval_checkpoints", "published checkpoints dealt with, by outcome "
                                   "(ok, error)", ["outcome"], registry=r)
        self.window = Gauge("templar_eval_window", "window of the last evaluated checkpoint", registry=r)
        self.global_step = Gauge("templar_eval_global_step", "global outer step of the last evaluated checkpoint",
                                 registry=r)
        self.loss = Gauge("templar_eval_heldout_loss", "held-out loss (nats/token) of the last evaluated "
                          "checkpoint", registry=r)
        self.perplexity = Gauge("templar_eval_heldout_perplexity", "exp(held-out loss) of the last evaluated "
                                "checkpoint", registry=r)
        self.bits_per_byte = Gauge("templar_eval_bits_per_byte", "held-out bits per UTF-8 byte of the last "
                                   "evaluated checkpoint", registry=r)
        self.lm_eval = Gauge("templar_eval_lm_eval", "lm-eval metric of the last evaluated checkpoint",
                             ["task", "metric"], registry=r)
        self.seconds = Gauge("templar_eval_seconds", "seconds to fetch and evaluate the last checkpoint",
                             registry=r)

    def __call__(self, record: dict) -> None:
        if "error" in record:
            self.checkpoints.labels(outcome="error").inc()
            return
        self.checkpoints.labels(outcome="ok").inc()
        self.window.set(record["window"])
        self.global_step.set(record.get("global_step") or 0)
        self.seconds.set(record.get("seconds") or 0.0)
        heldout = record.get("heldout") or {}
        for gauge, key in ((self.loss, "loss"), (self.perplexity, "perplexity"),
                           (self.bits_per_byte, "bits_per_byte")):
            if heldout.get(key) is not None:
                gauge.set(heldout[key])
        for task, metrics in (record.get("lm_eval") or {}).items():
            for name, value in metrics.items():
                if value is not None:  # NaN: written to the history as null
                    self.lm_eval.labels(task=task, metric=name).set(value)
