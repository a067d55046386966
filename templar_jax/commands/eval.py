"""`templar-jax eval CKPT`: held-out loss, perplexity, bits per byte (and optional lm-eval tasks);
`templar-jax eval --watch URL`: the same for every checkpoint the leader publishes (a service)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint or a demo run: held-out loss, perplexity, bits per byte",
        description="Evaluate a model on a shard set: loss in nats/token (pad/EOS targets masked as in "
                    "training), perplexity = exp(loss), and bits per byte = total nats / ln 2 / total "
                    "UTF-8 bytes of the unmasked target tokens. CKPT is an orbax checkpoint directory "
                    "(LocalCheckpoints root or one step dir) or a demo run folder runs/<id>, whose final "
                    "model is rebuilt from the validator's published aggregates and saved to "
                    "runs/<id>/final_checkpoint first. Optionally runs lm-eval tasks on the Hugging Face "
                    "export (needs `pip install lm-eval` and network access for the task data).")
    p.add_argument("checkpoint", metavar="CKPT", nargs="?",
                   help="checkpoint directory or demo run folder (not with --watch)")
    p.add_argument("--model", help="model preset or YAML (default: the config stored in the checkpoint)")
    p.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    p.add_argument("--data", help="'bundled' or a shard folder (default: the run's data, else bundled)")
    p.add_argument("--split", default="heldout", help="split subfolder of the data (default: heldout)")
    p.add_argument("--seq-len", type=int, help="sample length (default: checkpoint's, else manifest/model)")
    p.add_argument("--batches", type=int, help="evaluate only the first N batches (default: all samples)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per batch (default: 8)")
    p.add_argument("--pad-id", type=int, help="pad/EOS id to mask (default: manifest or tokenizer EOS)")
    p.add_argument("--tasks", help="lm-eval tasks, comma separated, or 'standard' (arc_easy, arc_challenge, "
                                   "hellaswag, piqa, winogrande, openbookqa, mmlu)")
    p.add_argument("--lm-eval-limit", type=int, help="lm-eval: at most N examples per task")
    p.add_argument("--config", default=None,
                   help="run config of a demo run folder (default: what the demo recorded, else demo)")
    p.add_argument("--set", dest="overrides", action="append", default=None, metavar="SECTION.KEY=VALUE",
                   help="run-config override the demo run used (only model/sparseloco/run.version matter)")
    p.add_argument("--no-digest-check", action="store_true",
                   help="run folder: save the replayed model even if it differs from the params digest the "
                        "validator logged (default: that is an error, usually a wrong --config/--set)")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the results as JSON to OUT")
    w = p.add_argument_group(
        "evaluator service", "--watch URL follows the checkpoints the leader validator publishes in its bucket "
        "(URL: gs://, s3:// or file://), evaluates each complete one once (oldest first) and appends the "
        "results to a JSONL history, which is also the state a restart resumes from. Model, version and "
        "data come from --config/--set (--data, --model override them).")
    w.add_argument("--watch", metavar="URL", help="the leader's bucket URL, or 'chain': the bucket the leader "
                                                  "validator of the run config's chain commits, looked up each poll")
    w.add_argument("--history", default="eval-watch/history.jsonl",
                   help="JSONL history (one record per checkpoint); downloads go beside it")
    w.add_argument("--poll-s", type=float, default=30.0, help="seconds between polls")
    w.add_argument("--polls", type=int, help="stop after N polls (default: run until interrupted)")
    w.add_argument("--metrics-port", type=int,
                   help="serve the evaluator's metrics (OpenMetrics) at http://HOST:PORT/metrics (0: any port)")
    w.add_argument("--metrics-host", default="127.0.0.1", help="address the metrics endpoint listens on")
    w.add_argument("--endpoint", help="s3:// only: endpoint URL of the leader's bucket")
    w.add_argument("--credentials-file", help="s3:// only: JSON file with read keys (else TEMPLAR_S3_READ_*)")
    p.set_defaults(func=_run)


def _chain_leader(settings):
    """() -> the bucket the chain's current leader validator committed (None when none did)."""
    from templar_jax.chain import ValidatorRule
    from templar_jax.neurons.network import PeerDirectory, open_chain

    c = settings.chain
    chain = open_chain(c.backend, c.network, c.hotkey, netuid=c.netuid, wallet=c.wallet,
                       blocks_per_window=settings.run.blocks_per_window, block_time_s=settings.run.block_time_s,
                       rule=ValidatorRule(min_stake=c.validator_min_stake, require_permit=c.validator_permit_required))
    peers = PeerDirectory(chain, settings.storage.client)

    def leader():
        uid = chain.metagraph().leader_uid
        return None if uid is None else peers.refresh().get(uid)

    return leader


def _watch(args, console) -> int:
    from pathlib import Path

    from templar_jax.config import RunConfigError, load_run_config
    from templar_jax.evaluate import EvalError, LmEvalUnavailable, open_eval_data
    from templar_jax.evaluate.history import EvalHistory
    from templar_jax.evaluate.lm_eval_tasks import parse_tasks, require_lm_eval
    from templar_jax.evaluate.load import resolve_model_config
    from templar_jax.evaluate.watch import CheckpointWatcher, checkpoint_evaluator
    from templar_jax.evaluate.watch_metrics import EvalMetrics
    from templar_jax.metrics.server import MetricsServer, MetricsServerError
    from templar_jax.model import ModelConfigError, load_model_config
    from templar_jax.data.sources import open_bucket
    from templar_jax.neurons.mesh import neuron_mesh
    from templar_jax.neurons.network import NetworkSetupError, load_credentials
    from templar_jax.storage import BadBucketUrl
    from templar_jax.xla_cache import enable_compilation_cache

    if args.checkpoint:
        log.error("eval: give either CKPT or --watch URL, not both")
        return 2
    if not args.config:
        log.error("eval --watch needs --config (the run's model, version and data)")
        return 2
    server = None
    try:
        settings = load_run_config(args.config, args.overrides or [])
        model_cfg = (resolve_model_config(None, args.model) if args.model else
                     load_model_config(settings.model.preset, **dict(settings.model.overrides)))
        tasks = parse_tasks(args.tasks) if args.tasks else None
        if tasks:
            require_lm_eval()
        enable_compilation_cache()
        data = open_eval_data(args.data or settings.data.path, split=args.split,
                              seq_len=args.seq_len or settings.data.seq_len, pad_id=args.pad_id,
                              cache_dir=settings.data.cache_dir)
        if args.watch == "chain":
            leader = _chain_leader(settings)
        else:
            creds = load_credentials(args.credentials_file, "TEMPLAR_S3_READ_") if args.watch.startswith("s3://") else None
            bucket = open_bucket(args.watch, endpoint=args.endpoint, credentials=creds)
            leader = lambda: bucket  # noqa: E731
        history = EvalHistory(args.history)
        metrics = EvalMetrics()
        for record in history.records:  # a restart exports what it already knows
            metrics(record)
        if args.metrics_port is not None:
            server = MetricsServer(metrics.registry, port=args.metrics_port, host=args.metrics_host)
            console.print(f"metrics at {server.url}")
        mesh = neuron_mesh(settings.mesh.spec)  # the run config's mesh, as the neurons use it
        evaluate = checkpoint_evaluator(model_cfg, data, batch_size=args.batch_size, max_batches=args.batches,
                                        tasks=tasks, lm_eval_limit=args.lm_eval_limit, mesh=mesh)
        watcher = CheckpointWatcher(leader, settings.run.version, history, evaluate,
                                    Path(args.history).parent / "checkpoints", on_record=metrics)
        console.print(f"watching {args.watch} (version {settings.run.version!r}); "
                      f"{len(history.windows)} checkpoints already in {args.history}")
        n = watcher.run(poll_s=args.poll_s, max_polls=args.polls)
        console.print(f"evaluated {n} checkpoints; history: {args.history}")
        return 0
    except KeyboardInterrupt:
        return 0
    except LmEvalUnavailable as err:
        log.error("%s", err)
        return 2
    except (EvalError, RunConfigError, ModelConfigError, NetworkSetupError, BadBucketUrl, MetricsServerError) as err:
        log.error("eval --watch failed: %s", err)
        return 1
    finally:
        if server is not None:
            server.close()


def _run(args) -> int:
    import tempfile

    from rich.console import Console
    from rich.progress import Progress

    from templar_jax.evaluate import (EvalError, LmEvalUnavailable, build_results, evaluate_shards,
                                      load_for_eval, open_eval_data, results_table, write_json)
    from templar_jax.evaluate.lm_eval_tasks import parse_tasks, require_lm_eval, run_lm_eval, write_hf_model
    from templar_jax.xla_cache import enable_compilation_cache

    console = Console()
    if not getattr(args, "verbose", False):
        logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every step of a restore
    if args.watch:
        return _watch(args, console)
    if not args.checkpoint:
        log.error("eval: give a checkpoint (CKPT) or --watch URL")
        return 2
    try:
        tasks = parse_tasks(args.tasks) if args.tasks else None
        if tasks:
            require_lm_eval()  # before any slow work
        if args.batch_size < 1:
            raise EvalError(f"--batch-size must be >= 1, got {args.batch_size}")
        enable_compilation_cache()
        with console.status("loading the model"):
            loaded = load_for_eval(args.checkpoint, step=args.step, model=args.model,
                                   run_config=args.config, overrides=args.overrides,
                                   strict_digest=not args.no_digest_check)
        data_arg = args.data or loaded.meta.extra.get("data_path") or "bundled"
        seq_len = args.seq_len or loaded.seq_len
        if seq_len is None and data_arg == "bundled":
            seq_len = loaded.model_cfg.max_seq_len
        data = open_eval_data(data_arg, split=args.split, seq_len=seq_len, pad_id=args.pad_id)
        with Progress(transient=True, console=console) as progress:
            bar = progress.add_task("held-out batches", total=None)
            heldout = evaluate_shards(loaded.params, loaded.model_cfg, data, batch_size=args.batch_size,
                                      max_batches=args.batches, split=args.split,
                                      progress=lambda i, n: progress.update(bar, completed=i, total=n))
        lm = None
        if tasks:
            with tempfile.TemporaryDirectory(prefix="templar-jax-lm-eval-") as tmp:
                hf_dir = write_hf_model(loaded.params, loaded.model_cfg, tmp, tokenizer_path=data.tokenizer_path,
                                        eos_id=data.pad_id)
                lm = run_lm_eval(hf_dir, tasks, batch_size=args.batch_size, limit=args.lm_eval_limit)
    except LmEvalUnavailable as err:
        log.error("%s", err)
        return 2
    except EvalError as err:
        log.error("eval failed: %s", err)
        return 1
    results = build_results(loaded, heldout, lm)
    console.print(results_table(results))
    if args.json_out:
        console.print(f"results: {write_json(results, args.json_out)}")
    return 0
