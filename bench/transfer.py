"""Transfer benchmark: one large object's put and get throughput per part count, per local server.

Servers: fake-gcs-server (GCS: parts written by tensorstore, joined by compose) and moto (S3:
multipart upload, in its own process), both on this machine, so the numbers measure client +
server overhead on shared cores, not a network. For each part count N the object moves as N parts of ceil(size / N) bytes, all N in
flight (N = 1: one PUT and one GET, the path below the threshold); the last row per server is
the reference's shape: 64 MiB parts, 8 in flight (storage.transfer.TransferConfig defaults).

With --stream-MBps R, every connection goes through a local proxy that paces each request and
response body to R MB/s (a WAN-like per-stream limit, which parts in parallel are for).

    python bench/transfer.py [--size 300000000] [--parts 1,2,4,8] [--backends gcs,s3] [--repeat 1]
                             [--stream-MBps 0]
Prints a table (with each row's throughput as a ratio of the 1-part row) and one JSON line per row.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from templar_jax.storage import Bucket, BucketConfig  # noqa: E402
from templar_jax.storage.transfer import MiB, S3_MIN_PART_BYTES, TransferConfig  # noqa: E402


def _config(size: int, parts: int | None) -> TransferConfig:
    if parts is None:
        return TransferConfig()  # the reference's shape
    if parts == 1:
        return TransferConfig(threshold_bytes=size + 1)  # below the threshold: one request each way
    part_bytes = max(S3_MIN_PART_BYTES, math.ceil(size / parts))
    return TransferConfig(part_bytes=part_bytes, threshold_bytes=1, part_concurrency=parts)


def _open(backend: str, server, endpoint: str, transfer: TransferConfig) -> Bucket:
    config = BucketConfig(request_timeout_s=300.0, retries=1, transfer=transfer)
    if backend == "gcs":
        return Bucket.open(f"gs://{server.new_bucket()}/", config=config)
    return Bucket.open(f"s3://{server.new_bucket()}/", server.credentials, endpoint=endpoint, config=config)


def _row(backend: str, server, endpoint: str, blob: bytes, parts: int | None, repeat: int) -> dict:
    """The fastest put and the fastest get of `repeat` round trips (shared cores are noisy)."""
    transfer = _config(len(blob), parts)
    bucket = _open(backend, server, endpoint, transfer)
    put_s = get_s = math.inf
    ok = True
    for _ in range(repeat):
        start = time.perf_counter()
        bucket.put("object", blob)
        put_s = min(put_s, time.perf_counter() - start)
        start = time.perf_counter()
        ok &= bucket.get("object", max_bytes=len(blob)) == blob
        get_s = min(get_s, time.perf_counter() - start)
        bucket.delete("object")  # the servers keep objects in memory
    n = math.ceil(len(blob) / transfer.part_bytes) if transfer.in_parts(len(blob)) else 1
    return {"bench": "transfer", "backend": backend, "parts": n, "part_MiB": round(len(blob) / n / MiB, 1),
            "in_flight": min(n, transfer.part_concurrency), "reference_shape": parts is None,
            "object_bytes": len(blob), "ok": ok, "put_s": round(put_s, 2), "get_s": round(get_s, 2),
            "put_MBps": round(len(blob) / put_s / 1e6, 1), "get_MBps": round(len(blob) / get_s / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=300_000_000, help="object bytes")
    ap.add_argument("--parts", default="1,2,4,8", help="part counts to measure (plus the reference row)")
    ap.add_argument("--backends", default="gcs,s3")
    ap.add_argument("--repeat", type=int, default=1, help="round trips per row; the fastest counts")
    ap.add_argument("--stream-MBps", type=float, default=0.0, help="per-connection pace through a proxy (0: direct)")
    args = ap.parse_args()
    from tests.servers import FaultProxy, GcsServer, S3Server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    blob = os.urandom(args.size)
    rows = []
    for backend in args.backends.split(","):
        server = GcsServer() if backend == "gcs" else S3Server(own_process=True)
        direct = server.url if backend == "gcs" else server.endpoint
        proxy = FaultProxy(direct) if args.stream_MBps else None
        if proxy:
            proxy.stream_Bps = args.stream_MBps * 1e6
        endpoint = proxy.endpoint if proxy else direct
        if backend == "gcs":  # tensorstore reads this once per process: run one paced or direct setting
            os.environ.update({"TENSORSTORE_GCS_HTTP_URL": endpoint, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "x",
                               "STORAGE_EMULATOR_HOST": server.url})
        try:
            for parts in [int(p) for p in args.parts.split(",")] + [None]:
                rows.append(_row(backend, server, endpoint, blob, parts, args.repeat) | {"stream_MBps": args.stream_MBps})
        finally:
            if proxy:
                proxy.stop()
            server.stop()
    base = {r["backend"]: r for r in rows if r["parts"] == 1 and not r["reference_shape"]}
    print(f"{'backend':<7} {'parts':>5} {'avg MiB':>8} {'flight':>6} {'put s':>6} {'put MB/s':>8} {'x1':>5} "
          f"{'get s':>6} {'get MB/s':>8} {'x1':>5} ok")
    for r in rows:
        b = base.get(r["backend"])
        ratio = (lambda k: f"{r[k] / b[k]:5.2f}" if b else "    -")
        tag = "  (reference shape: 64 MiB parts, 8 in flight)" if r["reference_shape"] else ""
        print(f"{r['backend']:<7} {r['parts']:>5} {r['part_MiB']:>8} {r['in_flight']:>6} {r['put_s']:>6} "
              f"{r['put_MBps']:>8} {ratio('put_MBps')} {r['get_s']:>6} {r['get_MBps']:>8} {ratio('get_MBps')} "
              f"{r['ok']}{tag}")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
