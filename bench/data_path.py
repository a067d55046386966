"""Data-path benchmark: download + verify throughput of one token shard from the local servers.

Baseline (same process, same objects): one plain `Bucket.get` per shard into memory, no file,
no hash; the "x get" column is each row's median over that baseline's median.

A shard set (N shards of --shard-mb MB of uint32 tokens, seq_len 2048, with sample ids and a
manifest) is uploaded with `prepare-data --upload`'s code (data.upload) to fake-gcs-server and to
moto (S3, in its own process), then each shard is fetched into an empty cache exactly as a neuron
does it (`data.remote.ShardCache.fetch`: HEAD, ranged reads of --chunk-mib into NAME.partial,
sha256 against the manifest, rename). Per row: MB/s of the whole fetch, and the sha256 pass alone
on the fetched file (the verify part of it), both on this machine's shared cores (client and
server compete for them), so the numbers bound client + server overhead, not a network.

    python bench/data_path.py [--shards 2] [--shard-mb 64] [--chunk-mib 8,64] [--backends gcs,s3] [--repeat 3]
Each (backend, chunk) row fetches every shard --repeat times into a fresh cache and reports the
median and the best; the sha256 column is the hash pass alone over a fetched file (the
download hashes as bytes arrive, so a fetch does not re-read the file). Prints a table and one
JSON line per row.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from templar_jax.data import train_name, write_shard  # noqa: E402
from templar_jax.data.manifest import build_manifest, file_sha256, write_manifest  # noqa: E402
from templar_jax.data.remote import ShardCache  # noqa: E402
from templar_jax.data.upload import upload_shard_sets  # noqa: E402
from templar_jax.storage import Bucket, BucketConfig  # noqa: E402

SEQ_LEN = 2048


def make_shards(folder: Path, n: int, shard_mb: float) -> list[int]:
    rng = np.random.default_rng(0)
    samples = max(1, int(shard_mb * 1e6 / (4 * SEQ_LEN)))
    for i in range(n):
        write_shard(folder, i, rng.integers(0, 262144, size=samples * SEQ_LEN, dtype=np.uint32), SEQ_LEN)
    write_manifest(folder, build_manifest(folder, SEQ_LEN, [(i, samples) for i in range(n)], eos_id=1))
    return [(folder / train_name(i)).stat().st_size for i in range(n)]


def fetch_once(backend: str, bucket: Bucket, n: int, chunk_mib: int, work: Path) -> list[dict]:
    rows = []
    cache_dir = work / f"cache-{backend}-{chunk_mib}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache = ShardCache(bucket, "", cache_dir, chunk_bytes=chunk_mib << 20)
    cache.manifest()
    for i in range(n):
        name = train_name(i)
        t0 = time.perf_counter()
        path = cache.fetch(name)
        fetch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        file_sha256(path)
        sha_s = time.perf_counter() - t0
        size = path.stat().st_size
        rows.append({"bytes": size, "fetch_MBps": size / fetch_s / 1e6, "sha256_MBps": size / sha_s / 1e6})
    cache.close()
    shutil.rmtree(cache_dir, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--shard-mb", type=float, default=64.0, help="token-file size per shard (MB)")
    ap.add_argument("--chunk-mib", default="8,64", help="ShardCache ranged-read sizes to measure (MiB)")
    ap.add_argument("--backends", default="gcs,s3")
    ap.add_argument("--repeat", type=int, default=3, help="fetches of every shard per row (fresh cache each)")
    args = ap.parse_args()
    from tests.servers import GcsServer, S3Server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="tjx-bench-data-"))
    try:
        sizes = make_shards(work / "shards", args.shards, args.shard_mb)
        t0 = time.perf_counter()
        local = [file_sha256(work / "shards" / train_name(i)) for i in range(args.shards)]
        sha_local = sum(sizes) / (time.perf_counter() - t0) / 1e6
        print(f"{args.shards} shards of {sizes[0] / 1e6:.1f} MB; sha256 of a local file: {sha_local:.0f} MB/s")
        assert len(local) == args.shards
        rows = []
        config = BucketConfig(request_timeout_s=300.0, retries=1)
        for backend in args.backends.split(","):
            if backend == "gcs":
                server = GcsServer()
                os.environ.update(TENSORSTORE_GCS_HTTP_URL=server.url, GOOGLE_AUTH_TOKEN_FOR_TESTING="x")
                bucket = Bucket.open(f"gs://{server.new_bucket()}/", config=config)
            else:
                server = S3Server(own_process=True)
                bucket = Bucket.open(f"s3://{server.new_bucket()}/", server.credentials, endpoint=server.endpoint,
                                     config=config)
            try:
                up = upload_shard_sets(work / "shards", bucket)
                print(f"{backend}: uploaded {up.objects} objects, {up.bytes / 1e6:.0f} MB at "
                      f"{up.bytes / up.seconds / 1e6:.0f} MB/s")
                # baseline and fetch rows interleaved per repeat, so load changes hit all alike
                chunks = [int(c) for c in args.chunk_mib.split(",")]
                raw: list[float] = []  # the baseline: one plain Bucket.get per shard, kept in memory
                runs: dict[int, list[dict]] = {c: [] for c in chunks}
                for _ in range(args.repeat):
                    for i in range(args.shards):
                        t0 = time.perf_counter()
                        n = len(bucket.get(train_name(i)))
                        raw.append(n / (time.perf_counter() - t0) / 1e6)
                    for chunk in chunks:
                        runs[chunk] += fetch_once(backend, bucket, args.shards, chunk, work)
                raw_median = float(np.median(raw))
                rows.append({"bench": "data_path", "backend": backend, "chunk_MiB": None, "baseline": "Bucket.get",
                             "shard_bytes": sizes[0], "fetches": len(raw), "fetch_MBps_median": round(raw_median, 1),
                             "fetch_MBps_best": round(max(raw), 1), "sha256_MBps_median": None,
                             "ratio_to_get": 1.0})
                for chunk in chunks:
                    mbps = [r["fetch_MBps"] for r in runs[chunk]]
                    rows.append({"bench": "data_path", "backend": backend, "chunk_MiB": chunk,
                                 "shard_bytes": sizes[0], "fetches": len(mbps),
                                 "fetch_MBps_median": round(float(np.median(mbps)), 1),
                                 "fetch_MBps_best": round(max(mbps), 1),
                                 "ratio_to_get": round(float(np.median(mbps)) / raw_median, 2),
                                 "sha256_MBps_median": round(float(np.median([r["sha256_MBps"] for r in runs[chunk]])), 1)})
            finally:
                server.stop()
        print(f"{'backend':8} {'path':>16} {'fetches':>7} {'shard MB':>8} {'MB/s median':>12} {'best':>7} "
              f"{'x get':>6} {'sha256 MB/s':>12}")
        for r in rows:
            path = "Bucket.get" if r["chunk_MiB"] is None else f"fetch {r['chunk_MiB']} MiB"
            sha = "-" if r["sha256_MBps_median"] is None else f"{r['sha256_MBps_median']:.1f}"
            print(f"{r['backend']:8} {path:>16} {r['fetches']:>7} {r['shard_bytes'] / 1e6:>8.1f} "
                  f"{r['fetch_MBps_median']:>12.1f} {r['fetch_MBps_best']:>7.1f} {r['ratio_to_get']:>6.2f} {sha:>12}")
        for r in rows:
            print(json.dumps(r))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
