"""Operator metrics: a neuron's event records as Prometheus gauges/counters served over HTTP
(OpenMetrics text format), and optional Weights & Biases logging."""

from templar_jax.metrics.exporters import Exporters, attach_exporters, neuron_metrics
from templar_jax.metrics.neuron import NeuronMetrics, reason_kind
from templar_jax.metrics.server import MetricsServer, MetricsServerError, read_endpoints, write_endpoint
from templar_jax.metrics.wandb_log import WandbError, WandbSink

__all__ = [
    "Exporters", "MetricsServer", "MetricsServerError", "NeuronMetrics", "WandbError", "WandbSink", "attach_exporters",
    "neuron_metrics", "read_endpoints", "reason_kind", "write_endpoint",
]
