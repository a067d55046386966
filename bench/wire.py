"""Wire format benchmark: encode/decode throughput and size on Covenant-72B shapes.

One decoder layer of the 72B model (wq, wk, wv, wo, w_gate, w_up, w_down, 2 norms: 855.7M
params, 208.9k chunks of 4096) as a synthetic payload (random sorted indices per chunk, random
codes), encoded and decoded with each index coding. Sizes for the whole 72B payload come from
the exact analytic size (wire.sizes), which the tests check against real encodes.

    python bench/wire.py [--layers 1] [--repeats 3] [--workers 1 2]
Prints a table and one JSON line per measurement. Decoding is timed beside a memcpy of the decoded
output (one int32 index and one float32 value per selected entry, the floor any decoder must pay)
and beside the reference (pre-streaming) Elias-Fano and code unpackers and the streaming decoders
with NumPy's array passes for the indices (`decode` uses the compiled row decoder when numba is
installed, extra fast-decode), all in the same run. Walls are noisy on a shared machine: compare
CPU times, and read the printed load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from templar_jax.wire import decode, elias_fano_jit, encode
from templar_jax.wire.bitpack import pack_uint, unpack_uint
from templar_jax.wire.codes_fast import unpack_codes
from templar_jax.wire.elias_fano import ef_decode, ef_encode, ef_params
from templar_jax.wire.elias_fano_fast import ef_decode_fast
from templar_jax.wire.layout import CODE_BITS, tensor_layout
from templar_jax.wire.sizes import covenant_72b_table, size_report
from templar_jax.wire.synthetic import random_payload

META = {"window": 123456, "uid": 42, "global_step": 3_000_000, "sample_digest": "0" * 32, "version": "1.0.0"}


def _best(fn, repeats: int) -> tuple[float, float, object]:
    """Best wall and best CPU seconds over repeats (CPU time is the steadier number on a shared
    machine; it sums all threads, so with one thread CPU ~ wall on an idle core)."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        out = None  # free the last result first, as a streaming consumer would (its memory is reused)
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return best, best_cpu, out


def _memcpy_decoded_output(entries: int, repeats: int) -> tuple[float, float]:
    """Best wall / CPU seconds to copy one int32 index and one float32 value per entry."""
    idx, val = np.ones(entries, np.int32), np.ones(entries, np.float32)
    idx_out, val_out = np.empty_like(idx), np.empty_like(val)
    best, best_cpu, _ = _best(lambda: (np.copyto(idx_out, idx), np.copyto(val_out, val)), repeats)
    return best, best_cpu


def _coded_arrays(payload, table) -> list:
    """(EFParams, Elias-Fano rows, packed codes, k) of each Elias-Fano-coded tensor."""
    coded = []
    for name, et in table.items():
        lay = tensor_layout(et, "elias-fano")
        if lay.idx_coding != "elias-fano":
            continue
        p = ef_params(lay.chunk_size, lay.k)
        tp = payload[name]
        coded.append((p, ef_encode(tp.idx.reshape(lay.rows, lay.k), p),
                      pack_uint(tp.codes.reshape(lay.rows, lay.k), CODE_BITS), lay.k))
    return coded


def _reference_unpackers(coded, repeats: int) -> tuple[float, float]:
    """Best wall / CPU seconds of the reference (row-at-once, whole-tensor) Elias-Fano and 2-bit
    unpackers over the same tensors: the decode path before the streaming decoder."""
    best, best_cpu, _ = _best(lambda: [(ef_decode(c, p), unpack_uint(q, k, CODE_BITS)) for p, c, q, k in coded],
                              repeats)
    return best, best_cpu


def _numpy_streaming_decoders(coded, repeats: int) -> tuple[float, float]:
    """Best wall / CPU seconds of the streaming decoders with NumPy's array passes for the indices
    (what `decode` runs without the extra fast-decode), one thread."""
    best, best_cpu, _ = _best(lambda: [(ef_decode_fast(c, p, compiled=False), unpack_codes(q, k))
                                       for p, c, q, k in coded], repeats)
    return best, best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1, help="stacked layers in the benchmarked payload")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="decoder thread counts to time")
    args = ap.parse_args()

    full = covenant_72b_table(n_layers=args.layers)
    table = {n: et for n, et in full.items() if n.startswith("layers/")}
    payload = random_payload(np.random.default_rng(0), table)
    entries = sum(int(tp.idx.size) for tp in payload.values())
    memcpy_s, memcpy_cpu = _memcpy_decoded_output(entries, max(args.repeats, 5))
    coded = _coded_arrays(payload, table)
    ref_s, ref_cpu = _reference_unpackers(coded, args.repeats)
    numpy_s, numpy_cpu = _numpy_streaming_decoders(coded, args.repeats)
    index_decoder = "compiled (numba)" if elias_fano_jit.available() else "NumPy"
    print(f"decoded output: {entries} entries; memcpy of int32 index + float32 value: {1e3 * memcpy_s:.1f} ms "
          f"(cpu {1e3 * memcpy_cpu:.1f} ms); reference Elias-Fano + code unpackers: {1e3 * ref_s:.1f} ms "
          f"(cpu {1e3 * ref_cpu:.1f} ms); streaming decoders with NumPy indices: {1e3 * numpy_s:.1f} ms "
          f"(cpu {1e3 * numpy_cpu:.1f} ms, {memcpy_cpu / numpy_cpu:.3f} of memcpy); `decode` indices: {index_decoder}")
    rows = []
    for coding in ("elias-fano", "twelve-bit"):
        enc_s, enc_cpu, data = _best(lambda: encode(payload, META, expected=table, index_coding=coding), args.repeats)
        by_workers = {}
        for w in args.workers:
            dec_s, dec_cpu, (decoded, _) = _best(lambda: decode(data, table, workers=w), args.repeats)
            assert all(np.array_equal(decoded[n].idx, payload[n].idx) for n in table)
            assert all(np.array_equal(decoded[n].codes, payload[n].codes) for n in table)
            by_workers[w] = (dec_s, dec_cpu)
        dec_s, dec_cpu = by_workers[args.workers[0]]
        rep = size_report(table, META, index_coding=coding)
        assert rep.encoded_bytes == len(data)
        whole = size_report(covenant_72b_table(), META, index_coding=coding)
        row = {
            "bench": "wire", "coding": coding, "layers": args.layers, "params": rep.params, "chunks": rep.chunks,
            "bytes": len(data), "bits_per_param": round(rep.bits_per_param, 5),
            "bytes_per_chunk": round(len(data) / rep.chunks, 2), "ratio_vs_reference": round(rep.ratio_vs_reference, 4),
            "encode_s": round(enc_s, 4), "decode_s": round(dec_s, 4), "decode_workers": args.workers[0],
            "decode_s_by_workers": {w: round(s, 4) for w, (s, _) in by_workers.items()},
            "decode_cpu_s_by_workers": {w: round(c, 4) for w, (_, c) in by_workers.items()},
            "entries": entries, "memcpy_s": round(memcpy_s, 4), "memcpy_cpu_s": round(memcpy_cpu, 4),
            "decode_vs_memcpy": round(memcpy_s / dec_s, 4), "decode_cpu_vs_memcpy_cpu": round(memcpy_cpu / dec_cpu, 4),
            "reference_unpackers_s": round(ref_s, 4), "reference_unpackers_cpu_s": round(ref_cpu, 4),
            "numpy_streaming_decoders_s": round(numpy_s, 4), "numpy_streaming_decoders_cpu_s": round(numpy_cpu, 4),
            "index_decoder": index_decoder,
            "encode_cpu_s": round(enc_cpu, 4), "decode_cpu_s": round(dec_cpu, 4),
            "encode_MBps": round(len(data) / enc_s / 1e6, 1), "decode_MBps": round(len(data) / dec_s / 1e6, 1),
            "encode_Mparams_per_s": round(rep.params / enc_s / 1e6, 1),
            "decode_Mparams_per_s": round(rep.params / dec_s / 1e6, 1),
            "full_72b_bytes": whole.encoded_bytes, "full_72b_bits_per_param": round(whole.bits_per_param, 5),
            "reference_72b_bytes": whole.reference_bytes,
        }
        row["load_average_1m"] = round(os.getloadavg()[0], 2)  # other jobs on this machine make walls noisy
        rows.append(row)
    print(f"{'coding':<11} {'B/chunk':>8} {'bit/param':>9} {'vs ref':>7} {'enc MB/s':>9} {'dec MB/s':>9} "
          f"{'enc ms':>8} {'dec ms':>8} {'enc cpu':>8} {'dec cpu':>8} {'memcpy/dec':>10} {'cpu ratio':>9} "
          f"{'72B GB':>7} {'ref GB':>7}")
    for r in rows:
        print(f"{r['coding']:<11} {r['bytes_per_chunk']:>8} {r['bits_per_param']:>9} {r['ratio_vs_reference']:>7} "
              f"{r['encode_MBps']:>9} {r['decode_MBps']:>9} {1e3 * r['encode_s']:>8.1f} {1e3 * r['decode_s']:>8.1f} "
              f"{1e3 * r['encode_cpu_s']:>8.1f} {1e3 * r['decode_cpu_s']:>8.1f} {r['decode_vs_memcpy']:>10.3f} "
              f"{r['decode_cpu_vs_memcpy_cpu']:>9.3f} "
              f"{r['full_72b_bytes'] / 1e9:>7.3f} {r['reference_72b_bytes'] / 1e9:>7.3f}")
    print("decode wall / cpu ms by threads: " + "; ".join(
        f"{r['coding']}: " + ", ".join(f"{w}t {1e3 * t:.1f} / {1e3 * r['decode_cpu_s_by_workers'][w]:.1f}"
                                       for w, t in r["decode_s_by_workers"].items())
        for r in rows) + f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
