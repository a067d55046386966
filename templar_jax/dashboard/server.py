"""The dashboard's web server: `GET /` is the page (with the current state inlined, so it renders
without a second request), `GET /state.json` the state the page polls every 2 s. Standard library
only; the page is plain HTML + vanilla JS drawing inline SVG (no build step)."""

from __future__ import annotations

import json
import logging
import os
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

from templar_jax.dashboard.state import StateCache

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")


def render_page(state: dict) -> str:
    """The page with `state` inlined as JSON, every '<' written as its JSON escape: no value can
    close the script tag ('</script>') or put the parser into its escaped script states ('<!--')."""
    return PAGE.read_text(encoding="utf-8").replace("__STATE__", json.dumps(state).replace("<", "\\u003c"))


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, *args, states: "StateSource", **kwargs):
        self.states = states
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            self._send(render_page(self.states.get()).encode(), "text/html; charset=utf-8")
        elif path == "/state.json":
            self._send(json.dumps(self.states.get()).encode(), "application/json")
        else:
            self.send_error(404, f"no such page: {path}")

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args) -> None:
        log.debug("dashboard: " + fmt, *args)


class StateSource(Protocol):
    def get(self) -> dict: ...


class DashboardServer:
    """Serves a dashboard at http://HOST:PORT/ (port 0: any free port) on a daemon thread;
    `serve_forever()` instead blocks (the CLI). `source` is a run folder or anything with
    `get() -> state` (`dashboard.live.LiveNetwork`)."""

    def __init__(self, source: str | os.PathLike | StateSource, *, host: str = "127.0.0.1", port: int = 8050):
        self.source = source if hasattr(source, "get") else StateCache(Path(source))
        self.httpd = ThreadingHTTPServer((host, port), partial(_Handler, states=self.source))
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_port
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "DashboardServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="dashboard", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self.thread is not None:
            self.httpd.shutdown()
        self.httpd.server_close()
