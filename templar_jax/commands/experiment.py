"""`templar-jax experiment compare`: AdamW DDP vs DiLoCo vs SparseLoCo in one process."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "experiment", help="in-process experiments (SparseLoCo vs DiLoCo vs AdamW DDP)",
        description="Research experiments that run on one host, no network or chain needed.")
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    c = sub.add_parser(
        "compare", help="train R replicas with AdamW DDP, DiLoCo and SparseLoCo on the same tokens",
        description=("Trains the same model from the same init with three methods for the same "
                     "token budget and reports final held-out loss, bytes sent per replica per "
                     "round and the compression ratio, as mean and spread over --seeds; writes "
                     "compare.json (every seed's curves and the summary), compare.png and one "
                     "compare-METHOD.png per method."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--model", default="tiny", help="model preset name (templar_jax/configs/models/NAME.yaml) or a YAML path")
    c.add_argument("--replicas", type=int, default=4, help="number of replicas R")
    c.add_argument("--inner-steps", type=int, default=15, help="inner AdamW steps H per round")
    c.add_argument("--rounds", type=int, default=10, help="outer rounds")
    c.add_argument("--batch", type=int, default=8, help="sequences per replica per inner step")
    c.add_argument("--inner-lr", type=float, default=1e-3, help="peak inner AdamW learning rate")
    c.add_argument("--warmup", type=int, default=10, help="inner warmup steps")
    c.add_argument("--cosine-steps", type=int, default=0,
                   help="inner cosine decay length after the warmup (0: to the end of the run)")
    c.add_argument("--data", choices=("bundled", "synthetic"), default="bundled",
                   help="bundled stdlib-docs corpus or a synthetic Markov source")
    c.add_argument("--n-eval", type=int, default=128, help="held-out sequences evaluated after each round")
    c.add_argument("--methods", default="adamw,diloco,sparseloco", help="comma-separated subset")
    c.add_argument("--alpha", type=float, default=1.0, help="SparseLoCo outer SGD step")
    c.add_argument("--alpha-in-ef", action="store_true",
                   help="the reference's form: alpha also scales the delta added to the error feedback")
    c.add_argument("--diloco-lr", type=float, default=0.7, help="DiLoCo outer Nesterov SGD step")
    c.add_argument("--diloco-momentum", type=float, default=0.9, help="DiLoCo outer momentum")
    c.add_argument("--beta", type=float, default=0.95, help="SparseLoCo error-feedback decay")
    c.add_argument("--topk", type=int, default=64, help="values kept per 4096-element chunk")
    c.add_argument("--rule", choices=("median_clip", "mean"), default="median_clip",
                   help="SparseLoCo aggregation rule (SPEC 2.4 or the paper's 1/R mean)")
    c.add_argument("--overlap-steps", type=int, default=2,
                   help="sparseloco-overlap: inner steps of round r+1 run before round r's outer step lands")
    c.add_argument("--seed", type=int, default=0, help="the seed when --seeds is not given")
    c.add_argument("--seeds", default=None,
                   help="comma-separated seeds (init and data order); reports mean and spread")
    c.add_argument("--out", type=Path, default=Path("runs/experiment"), help="output folder")
    c.set_defaults(func=_compare)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _compare(args) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from templar_jax.experiment import SimConfig
    from templar_jax.experiment.report import (save_json, save_method_plots, save_plot,
                                               summary_table)
    from templar_jax.experiment.seeds import compare_seeds

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = ([int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds is not None
             else [args.seed])
    cfg = SimConfig(model=args.model, replicas=args.replicas, inner_steps=args.inner_steps,
                    rounds=args.rounds, batch=args.batch, inner_lr=args.inner_lr,
                    warmup_steps=args.warmup, cosine_steps=args.cosine_steps, data=args.data,
                    n_eval=args.n_eval,
                    alpha=args.alpha, alpha_in_ef=args.alpha_in_ef, diloco_lr=args.diloco_lr,
                    diloco_momentum=args.diloco_momentum, beta=args.beta,
                    topk=args.topk, rule=args.rule, seed=args.seed,
                    overlap_steps=args.overlap_steps)
    console = Console()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("rounds", total=len(seeds) * len(methods) * cfg.rounds)

        def on_round(method, r, loss):
            progress.update(task, advance=1, description=f"{method} r{r + 1} loss {loss:.3f}")

        out = compare_seeds(cfg, seeds, methods, on_round=on_round)
    console.print(summary_table(out))
    js = save_json(out, args.out / "compare.json")
    pngs = [save_plot(out, args.out / "compare.png"), *save_method_plots(out, args.out)]
    console.print(f"wrote {js}, " + ", ".join(str(p) for p in pngs))
    return 0
