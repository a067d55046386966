"""Device memory as Prometheus gauges, read at scrape time (host RSS comes from prometheus_client's
own ProcessCollector as `process_resident_memory_bytes`)."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MEMORY_STATS = ("bytes_in_use", "peak_bytes_in_use", "bytes_limit")


class DeviceMemoryCollector(Collector):
    """`templar_device_memory_bytes{device, kind}` from each device's `memory_stats()` (JAX
    devices on GPU/TPU; CPU devices report none, so the family has no samples there)."""

    def __init__(self, devices: Callable[[], Sequence]):
        self.devices = devices

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("templar_device_memory_bytes", "accelerator memory by device and kind "
                                   "(bytes_in_use, peak_bytes_in_use, bytes_limit)", labels=["device", "kind"])
        for device in self.devices():
            stats = device.memory_stats() or {}
            for kind in MEMORY_STATS:
                if kind in stats:
                    family.add_metric([f"{device.platform}:{device.id}", kind], float(stats[kind]))
        yield family
