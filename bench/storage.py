"""Storage benchmark: put and gather throughput against local servers.

Backends: memory://, file:// (tmp dir), GCS (fake-gcs-server) and S3 (moto), all on this machine,
so the numbers measure client + server overhead, not a network. Each peer uploads one object of
--size bytes to its own bucket (concurrent puts), then one gather fetches all --peers objects with
head + size cap + time-window check, as a miner does each window.

    python bench/storage.py [--peers 20] [--size 4000000] [--backends memory,file,gcs,s3]
Prints a table and one JSON line per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from templar_jax.storage import Bucket, GatherStatus, PeerSource, UploadWindow, agather  # noqa: E402
from templar_jax.storage.keys import gradient_key  # noqa: E402


def _buckets(backend: str, n: int, servers: dict, tmp: str) -> list[Bucket]:
    out = []
    for i in range(n):
        if backend == "memory":
            out.append(Bucket.open(f"memory://bench-{i}"))
        elif backend == "file":
            out.append(Bucket.open(f"file://{tmp}/peer{i}"))
        elif backend == "gcs":
            out.append(Bucket.open(f"gs://{servers['gcs'].new_bucket()}/"))
        else:
            s3 = servers["s3"]
            out.append(Bucket.open(f"s3://{s3.new_bucket()}/", s3.credentials, endpoint=s3.endpoint))
    return out


async def _run(backend: str, peers: int, size: int, servers: dict, tmp: str) -> dict:
    buckets = _buckets(backend, peers, servers, tmp)
    blob = os.urandom(size)
    window = 7
    t0 = time.time()
    start = time.perf_counter()
    await asyncio.gather(*(b.aput(gradient_key(window, uid, "bench"), blob) for uid, b in enumerate(buckets)))
    put_s = time.perf_counter() - start
    sources = [PeerSource(uid, b) for uid, b in enumerate(buckets)]
    start = time.perf_counter()
    outcomes = await agather(sources, window, 120.0, version="bench", max_bytes=size,
                             upload_window=UploadWindow(t0 - 5, time.time() + 60))
    gather_s = time.perf_counter() - start
    ok = sum(o.status is GatherStatus.OK for o in outcomes)
    total = peers * size
    return {"bench": "storage", "backend": backend, "peers": peers, "object_bytes": size, "ok": ok,
            "put_s": round(put_s, 3), "gather_s": round(gather_s, 3),
            "put_MBps": round(total / put_s / 1e6, 1), "gather_MBps": round(total / gather_s / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, default=20)
    ap.add_argument("--size", type=int, default=4_000_000, help="bytes per peer object")
    ap.add_argument("--backends", default="memory,file,gcs,s3")
    args = ap.parse_args()
    backends = args.backends.split(",")
    servers: dict = {}
    if "gcs" in backends:
        from tests.servers import GcsServer

        servers["gcs"] = GcsServer()
        os.environ.update({"TENSORSTORE_GCS_HTTP_URL": servers["gcs"].url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "x"})
    if "s3" in backends:
        import logging

        from tests.servers import S3Server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        servers["s3"] = S3Server()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in backends:
                rows.append(asyncio.run(_run(backend, args.peers, args.size, servers, tmp)))
    finally:
        for s in servers.values():
            s.stop()
    print(f"{'backend':<8} {'peers':>5} {'MB/obj':>7} {'ok':>3} {'put s':>7} {'put MB/s':>9} {'gather s':>9} {'gather MB/s':>11}")
    for r in rows:
        print(f"{r['backend']:<8} {r['peers']:>5} {r['object_bytes'] / 1e6:>7.1f} {r['ok']:>3} {r['put_s']:>7} "
              f"{r['put_MBps']:>9} {r['gather_s']:>9} {r['gather_MBps']:>11}")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
