"""`templar-jax prepare-data`: text files -> pretokenized shards + sample ids + manifest
(and, with --upload URL, the prepared folder to a bucket)."""

from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare-data",
        help="tokenize text into train_*.npy / sample_ids_*.npy shards with a manifest",
        description=(
            "Tokenize documents and pack them into pretokenized shards (SPEC sec. 6): each "
            "document ends with EOS, no BOS, the stream's tail is padded with EOS. Writes "
            "train_{i:06d}.npy (uint32), sample_ids_{i:06d}.npy (uint64 blake2b-64 per sample), "
            "tokenizer.json and manifest.json (sizes + sha256). Without --tokenizer a byte-level "
            "BPE (<eos> = id 0) is trained on the input. --bundled builds the offline demo corpus "
            "from the Python standard library's documentation (train/ + heldout/)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", metavar="FILE_OR_DIR",
                     help=".txt/.md/.rst files (one document each), .jsonl files ({'text': ...} "
                          "per line) or folders searched recursively")
    src.add_argument("--bundled", action="store_true",
                     help="build the bundled stdlib-docs corpus (no network)")
    p.add_argument("--out", help="output folder (required with --input; with --bundled, default "
                                 "is the cache ~/.cache/templar-jax/ or --cache-dir)")
    p.add_argument("--cache-dir", help="cache root for --bundled without --out")
    p.add_argument("--tokenizer", help="tokenizer.json to use instead of training a BPE")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sample")
    p.add_argument("--samples-per-shard", type=int, default=1024, help="samples per shard file")
    p.add_argument("--vocab-size", type=int, default=4096, help="vocab of the trained BPE")
    p.add_argument("--eos-id", type=int, help="EOS id (default: the tokenizer's EOS token)")
    p.add_argument("--upload", metavar="URL",
                   help="then upload the prepared folder to gs://BUCKET/PREFIX, s3://BUCKET/PREFIX or "
                        "file://PATH (each set's files checked against its manifest; manifests last)")
    p.add_argument("--endpoint", help="--upload to s3:// only: endpoint URL (R2, MinIO, ...)")
    p.add_argument("--credentials-file", help="--upload to s3:// only: JSON file with write keys "
                                              "(else TEMPLAR_S3_ACCESS_KEY_ID / TEMPLAR_S3_SECRET_ACCESS_KEY)")
    p.set_defaults(func=run)


def _report(console, title: str, rows: list[tuple[str, int, int, int, int]], out, seconds: float) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("split", "documents", "tokens", "samples", "shards"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, docs, tokens, samples, shards in rows:
        table.add_row(split, f"{docs:,}", f"{tokens:,}", f"{samples:,}", f"{shards:,}")
    console.print(table)
    console.print(f"wrote {out} in {seconds:.1f}s")


def _upload(console, folder, args) -> None:
    from templar_jax.data.sources import open_bucket
    from templar_jax.data.upload import upload_shard_sets
    from templar_jax.neurons.network import load_credentials

    creds = load_credentials(args.credentials_file, "TEMPLAR_S3_") if args.upload.startswith("s3://") else None
    bucket = open_bucket(args.upload, endpoint=args.endpoint, credentials=creds)
    stats = upload_shard_sets(folder, bucket, on_file=lambda key, n: console.print(f"  {key} ({n:,} bytes)"))
    console.print(f"uploaded {stats.objects} objects, {stats.bytes / 1e6:.1f} MB to {args.upload} "
                  f"in {stats.seconds:.1f}s")


def run(args) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from templar_jax.data import DataError, load_tokenizer, prepare_texts, read_documents
    from templar_jax.data.bundled import build_bundled_dataset, ensure_bundled_dataset
    from templar_jax.neurons.network import NetworkSetupError
    from templar_jax.storage import BadBucketUrl, StorageError

    console = Console()
    t0 = time.perf_counter()
    try:
        if args.bundled:
            if args.out:
                with Progress(console=console, transient=True) as bar:
                    task = bar.add_task("tokenizing stdlib docs", total=None)
                    info = build_bundled_dataset(args.out, args.seq_len, lambda: bar.advance(task))
                out = args.out
            else:
                out = ensure_bundled_dataset(args.cache_dir, args.seq_len)
                import json
                info = json.loads((out / "corpus.json").read_text())
            rows = [(s, info[s]["documents"], info[s]["tokens"], info[s]["samples"], info[s]["shards"])
                    for s in ("train", "heldout")]
            _report(console, f"bundled corpus (seq_len {args.seq_len}, vocab {info['vocab_size']})",
                    rows, out, time.perf_counter() - t0)
            if args.upload:
                _upload(console, out, args)
            return 0
        if not args.out:
            Console(stderr=True).print("[red]prepare-data: --out is required with --input[/red]")
            return 2
        texts = [text for _, text in read_documents(args.input)]
        if not texts:
            raise DataError(f"no documents found in {args.input}")
        tok = load_tokenizer(args.tokenizer) if args.tokenizer else None
        with Progress(console=console) as bar:
            task = bar.add_task("tokenizing + packing", total=len(texts))
            _, stats = prepare_texts(texts, args.out, seq_len=args.seq_len,
                                     samples_per_shard=args.samples_per_shard, tokenizer=tok,
                                     vocab_size=args.vocab_size, eos_id=args.eos_id,
                                     on_document=lambda: bar.advance(task))
        _report(console, f"prepared data (seq_len {args.seq_len})",
                [("all", stats.n_documents, stats.n_tokens, stats.n_samples, stats.n_shards)],
                args.out, time.perf_counter() - t0)
        if args.upload:
            _upload(console, args.out, args)
        return 0
    except (StorageError, BadBucketUrl, NetworkSetupError) as e:
        Console(stderr=True).print(f"[red]prepare-data: upload failed: {getattr(e, 'reason', e)}[/red]",
                                   soft_wrap=True)
        return 1
    except DataError as e:
        Console(stderr=True).print(f"[red]prepare-data: {e.reason}[/red]", soft_wrap=True)
        return 1
