"""`templar-jax payload`: wire-format sizes for a model, and validation of a payload file."""

from __future__ import annotations

import argparse


def _table(model: str):
    from templar_jax.model import flat_param_shapes, load_model_config, param_batch_dims
    from templar_jax.wire import expected_table

    cfg = load_model_config(model)
    return expected_table(flat_param_shapes(cfg), batch_dims=param_batch_dims(cfg))


def _size(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from templar_jax.wire.sizes import size_report

    table = _table(args.model)
    out = Table(title=f"payload size per peer per window: {args.model}")
    for col in ("index coding", "params", "chunks", "bytes", "bit/param", "reference bytes", "vs reference"):
        out.add_column(col, justify="right")
    for coding in ("elias-fano", "twelve-bit"):
        r = size_report(table, {}, index_coding=coding, chunk=args.chunk, topk=args.topk)
        out.add_row(coding, f"{r.params:,}", f"{r.chunks:,}", f"{r.encoded_bytes:,}", f"{r.bits_per_param:.4f}",
                    f"{r.reference_bytes:,}", f"{r.ratio_vs_reference:.3f}")
    Console().print(out)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from templar_jax.wire import PayloadError, decode

    table = _table(args.model)
    with open(args.file, "rb") as f:
        data = f.read()
    try:
        payload, meta = decode(data, table, chunk=args.chunk, topk=args.topk, require_all=not args.partial)
    except PayloadError as e:
        print(f"INVALID: {e.reason}")
        return 1
    print(f"valid payload, {len(data):,} bytes, meta {meta}")
    for name, tp in payload.items():
        print(f"  {name:28s} idx {tuple(tp.idx.shape)}  mean |lut| {float(np.abs(tp.lut).mean()):.3g}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("payload", help="wire-format sizes and payload validation",
                              description=__doc__)
    sub = p.add_subparsers(dest="payload_command", metavar="ACTION", required=True)
    for name, fn, helptext in (("size", _size, "encoded size per peer vs the reference format"),
                               ("inspect", _inspect, "decode and validate a payload file")):
        q = sub.add_parser(name, help=helptext, description=helptext)
        q.add_argument("--model", default="covenant-72b", help="model preset name or YAML path")
        q.add_argument("--chunk", type=int, default=64, help="chunk side (SPEC 2.1)")
        q.add_argument("--topk", type=int, default=64, help="values per chunk (SPEC 2.2)")
        if name == "inspect":
            q.add_argument("file", help="payload file (e.g. a downloaded gradient-* object)")
            q.add_argument("--partial", action="store_true", help="accept payloads that omit some tensors")
        q.set_defaults(func=fn)
