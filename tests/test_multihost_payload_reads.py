"""Run config `multihost.payload_reads`: two real processes (jax.distributed over 127.0.0.1, one
CPU device each) gather one window from file buckets in both modes. Every process ends with the
same bytes and arrays either way; with `every_host` the coordination service carries only the
header and the misses while every read succeeds, and a payload overwritten after process 0 read
it comes from process 0 for that uid alone.

Run as a script, this file is the worker: `python test_multihost_payload_reads.py ROOT PORT PID`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WINDOW, VALID, INVALID, ABSENT = 4, (2, 5, 8), 7, 9
OVERWRITTEN = 5


def _model():
    from templar_jax.config import load_run_config
    from templar_jax.protocol.global_model import GlobalModel

    return GlobalModel(load_run_config("demo", []), pad_id=None)


def _payload_bytes(model, uid: int, seed: int) -> bytes:
    from templar_jax.wire.synthetic import random_payload

    payload = random_payload(np.random.default_rng(seed), model.expected, chunk=model.codec.chunk,
                             topk=model.codec.topk)
    return model.codec.encode(payload, {"window": WINDOW, "uid": uid, "version": model.version, "global_step": 1})


def _url(root: Path, uid: int) -> str:
    return f"file://{root}/peer-{uid}"


class CountingClient:
    """jax.distributed's key-value client, counting the bytes this process publishes."""

    def __init__(self, client):
        self.client, self.sent = client, 0

    def key_value_set(self, key, value, *args, **kw):
        self.sent += len(value.encode() if isinstance(value, str) else value)
        return self.client.key_value_set(key, value, *args, **kw)

    def key_value_set_bytes(self, key, value, *args, **kw):
        self.sent += len(value)
        return self.client.key_value_set_bytes(key, value, *args, **kw)

    def __getattr__(self, name):
        return getattr(self.client, name)


def _summary(got, sent: int) -> dict:
    arrays = {}
    for uid, payload in got.valid.items():
        h = hashlib.sha256()
        for name in sorted(payload):
            for part in payload[name]:
                h.update(np.ascontiguousarray(np.asarray(part)).tobytes())
        arrays[str(uid)] = h.hexdigest()
    return {"sent": sent, "valid": sorted(got.valid), "failed": {str(u): r for u, r in sorted(got.failed.items())},
            "invalid": sorted(got.invalid), "stored_at": {str(u): t for u, t in sorted(got.stored_at.items())},
            "raw": {str(u): hashlib.sha256(got.raw[u]).hexdigest() for u in sorted(got.raw)}, "arrays": arrays}


def _worker(root: Path, port: int, pid: int) -> None:
    import jax

    jax.config.update("jax_num_cpu_devices", 1)
    from templar_jax.distributed import initialize
    from templar_jax.multihost import AgreedBucket, Agreement
    from templar_jax.multihost.runtime import coordination_client
    from templar_jax.neurons.agreed_gather import agreed_gather
    from templar_jax.neurons.exchange import gather_window
    from templar_jax.neurons.host_reads import HostReads
    from templar_jax.neurons.spool import PayloadSpool
    from templar_jax.storage.bucket import Bucket
    from templar_jax.storage.keys import gradient_key
    from templar_jax.storage.timing import UploadWindow

    initialize(f"127.0.0.1:{port}", 2, pid)
    client = CountingClient(coordination_client())
    agreement = Agreement(client, pid, 2, wait_s=120)
    model = _model()
    # a peer's bucket as a neuron's PeerDirectory holds it: opened lazily, by process 0 for the
    # agreed gather and by each other process itself for its own reads
    buckets = {uid: AgreedBucket.lazy(agreement, _url(root, uid), lambda uid=uid: Bucket.open(_url(root, uid)))
               for uid in (*VALID, INVALID, ABSENT)}
    results = {}

    def gather(mode: str, *, spool=None, after=lambda: None):
        def fetch(keep_raw):
            got = gather_window(WINDOW, sorted(buckets), buckets, upload=UploadWindow(0.0, 4e9), version=model.version,
                                codec=model.codec, deadline_s=60.0, keep_raw=keep_raw, spool=spool)
            after()  # e.g. a peer overwrites its object once process 0 has read it
            return got

        reads = HostReads(buckets, deadline_s=60.0, in_flight=4) if mode == "every_host" else None
        client.sent = 0
        got = agreed_gather(agreement, WINDOW, fetch, codec=model.codec, version=model.version, keep_raw=True,
                            spool=spool, reads=reads)
        return _summary(got, client.sent)

    def overwrite():
        Bucket.open(_url(root, OVERWRITTEN)).put(gradient_key(WINDOW, OVERWRITTEN, model.version),
                                                 (root / "rewritten").read_bytes())

    results["leader"] = gather("leader")
    results["every_host"] = gather("every_host")
    results["overwritten"] = gather("every_host", spool=PayloadSpool(root / f"spool-{pid}", model.codec),
                                    after=overwrite if pid == 0 else lambda: None)
    print("RESULT " + json.dumps(results), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_host_reads_agree_with_process_0s_and_fall_back_per_uid(tmp_path):
    from templar_jax.storage.bucket import Bucket
    from templar_jax.storage.keys import gradient_key

    model = _model()
    originals = {uid: _payload_bytes(model, uid, seed=uid) for uid in VALID}
    for uid, data in {**originals, INVALID: b"not a payload"}.items():
        Bucket.open(_url(tmp_path, uid)).put(gradient_key(WINDOW, uid, model.version), data)
    Bucket.open(_url(tmp_path, ABSENT)).list()  # committed, but nothing uploaded
    (tmp_path / "rewritten").write_bytes(_payload_bytes(model, OVERWRITTEN, seed=99))

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and not k.startswith("JAX_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, __file__, str(tmp_path), str(port), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for i in (0, 1)]
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=120)
            assert p.returncode == 0, text[-4000:]
            out.append(json.loads(text.split("RESULT ", 1)[1].splitlines()[0]))
    finally:
        for p in procs:
            p.kill()

    digests = {str(u): hashlib.sha256(b).hexdigest() for u, b in originals.items()}
    for mode in ("leader", "every_host", "overwritten"):
        p0, p1 = ({k: v for k, v in r[mode].items() if k != "sent"} for r in out)
        assert p0 == p1, mode  # outcome, bytes and decoded arrays alike on both processes
        assert p0["valid"] == list(VALID) and p0["invalid"] == [INVALID]
        assert sorted(p0["failed"]) == [str(INVALID), str(ABSENT)]
        assert p0["raw"] == digests, mode  # process 0's bytes everywhere, also where the peer overwrote them
    assert out[0]["every_host"]["arrays"] == out[0]["leader"]["arrays"]

    sizes = {u: len(b) for u, b in originals.items()}
    sent = {mode: out[0][mode]["sent"] for mode in ("leader", "every_host", "overwritten")}
    print(f"bytes through the key-value store per window (process 0, payloads {sizes}): {sent}; "
          f"process 1's report: {out[1]['every_host']['sent']} bytes")
    assert sent["leader"] > sum(sizes.values())
    assert sent["every_host"] < 4096 < min(sizes.values())  # the header alone
    # the overwritten uid's bytes alone, besides the header
    assert sizes[OVERWRITTEN] < sent["overwritten"] < sizes[OVERWRITTEN] + 4096
    assert out[1]["every_host"]["sent"] < 256  # an empty list of misses, labelled


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _worker(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
