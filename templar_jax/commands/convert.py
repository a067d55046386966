"""`templar-jax convert to-hf | from-hf | verify`: our checkpoints <-> Hugging Face Llama."""

from __future__ import annotations

import argparse
import logging
import re

log = logging.getLogger(__name__)

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4,
          "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_size(text: str) -> int:
    """'5GB' -> 5_000_000_000, '512MiB' -> 536870912, '1000' -> 1000."""
    match = _SIZE_RE.match(text)
    unit = (match.group(2) or "").upper() if match else None
    if not match or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 5GB, 512MiB, 1000000)")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return size


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert checkpoints to/from Hugging Face LlamaForCausalLM",
        description="Convert between templar-jax orbax checkpoints and Hugging Face "
                    "LlamaForCausalLM directories (safetensors + config.json).")
    sub = parser.add_subparsers(dest="convert_command", metavar="ACTION", required=True)

    to_hf = sub.add_parser(
        "to-hf", help="export an orbax checkpoint to a Hugging Face directory",
        description="Stream an orbax checkpoint (a LocalCheckpoints dir or one step dir) into "
                    "safetensors shards + config.json, one tensor at a time.")
    to_hf.add_argument("checkpoint", help="checkpoint directory (root: latest step; or a step dir)")
    to_hf.add_argument("out_dir", help="output directory for the Hugging Face files")
    to_hf.add_argument("--model", help="model preset name or YAML (default: the config stored "
                                       "in the checkpoint's meta)")
    to_hf.add_argument("--step", type=int, help="step to export (default: latest)")
    to_hf.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16",
                       help="tensor dtype in the export (default bfloat16)")
    to_hf.add_argument("--max-shard-size", type=parse_size, default="5GB",
                       help="split into shards + index above this size (default 5GB)")
    to_hf.add_argument("--eos-token-id", type=int, help="eos_token_id for config.json")
    to_hf.add_argument("--bos-token-id", type=int, help="bos_token_id for config.json")
    to_hf.set_defaults(func=_to_hf)

    from_hf = sub.add_parser(
        "from-hf", help="import a Hugging Face Llama directory as an orbax checkpoint",
        description="Read config.json + safetensors, build our ModelConfig and write an "
                    "orbax checkpoint (the ModelConfig is stored in the checkpoint meta).")
    from_hf.add_argument("hf_dir", help="Hugging Face model directory")
    from_hf.add_argument("out_dir", help="output checkpoint directory")
    from_hf.add_argument("--step", type=int, default=0, help="step/window number to save as")
    from_hf.add_argument("--version", default="hf-import", help="run version stored in the meta")
    from_hf.add_argument("--param-dtype", choices=("float32", "bfloat16"), default="float32",
                         help="parameter storage dtype (default float32)")
    from_hf.set_defaults(func=_from_hf)

    verify = sub.add_parser(
        "verify", help="compare our forward with transformers on a Hugging Face directory",
        description="Load HFDIR with transformers and through our converter, run both on the "
                    "same random tokens in fp32, print the max abs logit difference; exit 1 "
                    "above --tolerance. Needs torch + transformers (extra [hf]).")
    verify.add_argument("hf_dir", help="Hugging Face model directory")
    verify.add_argument("--tolerance", type=float, default=1e-3,
                        help="max allowed abs logit difference (default 1e-3)")
    verify.add_argument("--batch", type=int, default=2)
    verify.add_argument("--seq-len", type=int, default=32)
    verify.add_argument("--seed", type=int, default=0)
    verify.set_defaults(func=_verify)


def _progress(description: str):
    from rich.progress import Progress

    progress = Progress(transient=True)
    task = progress.add_task(description, total=None)

    def update(i: int, n: int, name: str) -> None:
        progress.update(task, completed=i, total=n, description=f"{description} {name}")

    return progress, update


def _to_hf(args) -> int:
    from templar_jax.convert.from_hf import model_config_from_json
    from templar_jax.convert.mapping import ConversionError
    from templar_jax.convert.sources import OrbaxSource
    from templar_jax.convert.to_hf import export_hf

    try:
        source = OrbaxSource(args.checkpoint, step=args.step)
        if args.model:
            from templar_jax.model.config import load_model_config

            cfg = load_model_config(args.model)
        else:
            stored = source.meta.get("extra", {}).get("model_config")
            if stored is None:
                raise ConversionError("the checkpoint stores no model config; pass --model")
            cfg = model_config_from_json(stored)
        progress, update = _progress("export")
        with progress:
            files = export_hf(source, cfg, args.out_dir, dtype=args.dtype,
                              max_shard_bytes=args.max_shard_size, progress=update,
                              bos_token_id=args.bos_token_id, eos_token_id=args.eos_token_id)
    except ConversionError as err:
        log.error("to-hf failed: %s", err)
        return 1
    print(f"wrote {len(files)} files to {args.out_dir}: {', '.join(files)}")
    return 0


def _from_hf(args) -> int:
    from templar_jax.convert.from_hf import import_hf_checkpoint
    from templar_jax.convert.mapping import ConversionError

    try:
        progress, update = _progress("import")
        with progress:
            cfg, step_dir = import_hf_checkpoint(args.hf_dir, args.out_dir, step=args.step,
                                                 version=args.version,
                                                 param_dtype=args.param_dtype, progress=update)
    except ConversionError as err:
        log.error("from-hf failed: %s", err)
        return 1
    print(f"wrote checkpoint {step_dir} ({cfg.n_layers} layers, d_model {cfg.d_model}, "
          f"vocab {cfg.vocab_size}, tied={cfg.tie_embeddings})")
    return 0


def _verify(args) -> int:
    from templar_jax.convert.mapping import ConversionError
    from templar_jax.convert.verify import verify_hf_dir

    try:
        result = verify_hf_dir(args.hf_dir, batch=args.batch, seq_len=args.seq_len, seed=args.seed)
    except ConversionError as err:
        log.error("verify failed: %s", err)
        return 1
    ok = result.max_abs_diff <= args.tolerance
    print(f"max abs logit diff {result.max_abs_diff:.3e} (max |logit| {result.max_abs_logit:.3e}, "
          f"{result.batch}x{result.seq_len} tokens): {'OK' if ok else 'FAIL'} "
          f"(tolerance {args.tolerance:g})")
    return 0 if ok else 1
