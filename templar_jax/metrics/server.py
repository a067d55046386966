"""The HTTP endpoint Prometheus scrapes: `GET /metrics` in the Prometheus text format, or in the
OpenMetrics text format when the scraper asks for it (`Accept: application/openmetrics-text`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server


class MetricsServerError(OSError):
    """The metrics endpoint cannot listen where the run config says."""


class MetricsServer:
    """Serves `registry` on a daemon thread at http://HOST:PORT/metrics (port 0: any free port)."""

    def __init__(self, registry: CollectorRegistry, *, port: int, host: str = "127.0.0.1"):
        try:
            self.httpd, self.thread = start_http_server(port, addr=host, registry=registry)
        except OSError as err:
            raise MetricsServerError(f"metrics.port={port}, metrics.host={host!r}: cannot listen there "
                                     f"({err.strerror or err})") from None
        self.host, self.port = host, self.httpd.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def endpoints_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "metrics"


def write_endpoint(run_dir: str | os.PathLike, role: str, uid: int, url: str) -> Path:
    """Record where a neuron's metrics are served (with port 0 only the neuron knows)."""
    path = endpoints_dir(run_dir) / f"{role}-{uid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"role": role, "uid": uid, "url": url, "pid": os.getpid()}))
    return path


def read_endpoints(run_dir: str | os.PathLike) -> dict[str, str]:
    """'{role}-{uid}' -> metrics URL, for every neuron of the run that serves metrics."""
    out = {}
    for path in sorted(endpoints_dir(run_dir).glob("*.json")):
        try:
            out[path.stem] = str(json.loads(path.read_text())["url"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written by a starting neuron
    return out
